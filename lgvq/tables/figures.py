"""The report's figures (matplotlib, Agg backend), each returned as PNG bytes:

- `table_figure`: per (dataset, metric) of a table, every tokenizer's variants side by side (mean
  over seeds, ± sample std), the table's baseline / ceiling rows as dashed lines, and, when the table
  carries paired-by-seed intervals (`delta_lo`/`delta_hi`), a strip of Δ vs base with its 95 % interval;
- `curves_figure`: loss curves of several runs overlaid (mean over seeds, min–max band), a
  validation column beside its training column;
- `usage_figure`: each run's code frequencies, sorted, on one axis.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lgvq.tables.names import tokenizer_name, variant_suffix
from lgvq.tables.stats import is_effect

DPI = 80
VALIDATION_PREFIXES = ("val_", "val/", "val.")   # log columns holding a validation loss
SPECIAL_KINDS = ("baseline", "ceiling")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 7, "axes.titlesize": 7, "legend.fontsize": 6, "axes.spines.top": False,
                         "axes.spines.right": False})
    return plt


def _png(fig) -> bytes:
    plt = _plt()
    buf = io.BytesIO()
    # fixed margins (`_margins`), no bbox_inches="tight" / tight_layout: they lay out every tick label again
    # and cost seconds per figure on a busy CPU
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _margins(fig, *, left: float = 0.45, right: float = 0.1, top: float = 0.45, bottom: float = 0.4,
             wspace: float = 0.35, hspace: float = 0.7) -> None:
    """Margins in inches, whatever the figure's size."""
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=left / w, right=1 - right / w, top=1 - top / h, bottom=bottom / h, wspace=wspace,
                        hspace=hspace)


def variant_label(variant: str) -> str:
    return variant_suffix(variant) or "base"


def row_kinds(df: pd.DataFrame) -> pd.Series:
    """model / baseline / ceiling per row: the table's `row_kind` column, or, in a table written
    before that column existed, read from the variant ("baseline:<name>")."""
    if "row_kind" in df:
        return df["row_kind"].fillna("model").astype(str)
    variant = df["variant"].fillna("").astype(str)
    return variant.map(lambda v: next((k for k in SPECIAL_KINDS if v.startswith(f"{k}:")), "model"))


def _finite(v) -> bool:
    try:
        return not math.isnan(float(v))
    except (TypeError, ValueError):
        return False


def table_figure(df: pd.DataFrame) -> tuple[bytes, bool] | None:
    """(PNG, whether it shows Δ intervals), or None when the table has no number of ours."""
    df = df.copy()
    df["tokenizer"] = df["tokenizer"].fillna("").astype(str)
    df["variant"] = df["variant"].fillna("").astype(str)
    kinds = row_kinds(df)
    computed = df["n_seeds"].fillna(0).astype(int) > 0
    ours = df[computed & (kinds == "model") & (df["tokenizer"] != "")]
    special = df[computed & kinds.isin(SPECIAL_KINDS)].assign(kind=kinds[computed & kinds.isin(SPECIAL_KINDS)])
    if ours.empty:
        return None
    pairs = list(dict.fromkeys(zip(ours["dataset"], ours["metric"])))
    has_delta = {"delta_lo", "delta_hi"} <= set(df.columns) and bool(
        ours[["delta_lo", "delta_hi"]].apply(pd.to_numeric, errors="coerce").notna().all(axis=1).any())
    variants = list(dict.fromkeys(ours["variant"]))
    plt = _plt()
    ncols = min(4, len(pairs))
    blocks = math.ceil(len(pairs) / ncols)
    ratios = [3, 1.4] * blocks if has_delta else [3] * blocks
    fig = plt.figure(figsize=(2.9 * ncols + 0.3, sum(ratios) * 0.75 + 0.6))
    w, h = fig.get_size_inches()
    grid = fig.add_gridspec(len(ratios), ncols, height_ratios=ratios, hspace=0.75, wspace=0.35, left=0.5 / w,
                            right=1 - 0.1 / w, top=1 - 0.3 / h, bottom=0.45 / h)
    colours = {v: f"C{i}" for i, v in enumerate(variants)}
    for i, (dataset, metric) in enumerate(pairs):
        block, col = divmod(i, ncols)
        sub = ours[(ours["dataset"] == dataset) & (ours["metric"] == metric)]
        tokenizers = list(dict.fromkeys(sub["tokenizer"]))
        ax = fig.add_subplot(grid[block * (2 if has_delta else 1), col])
        width = 0.8 / len(variants)
        for j, v in enumerate(variants):
            rows = [sub[(sub["tokenizer"] == t) & (sub["variant"] == v)] for t in tokenizers]
            x = [k + (j - (len(variants) - 1) / 2) * width for k, r in enumerate(rows) if not r.empty]
            got = [r.iloc[0] for r in rows if not r.empty]
            if not got:
                continue
            yerr = [float(r.ours_std) if int(r.n_seeds) > 1 else 0.0 for r in got]
            ax.bar(x, [float(r.ours_mean) for r in got], width=width, yerr=yerr, capsize=2, color=colours[v],
                   label=variant_label(v), error_kw={"elinewidth": 0.8})
        for _, s in special[(special["dataset"] == dataset) & (special["metric"] == metric)].iterrows():
            ax.axhline(float(s.ours_mean), ls="--", lw=0.9, color="0.45" if s.kind == "baseline" else "tab:green")
            ax.annotate(str(s.row), (1.0, float(s.ours_mean)), xycoords=("axes fraction", "data"), fontsize=5,
                        ha="right", va="bottom", color="0.3")
        arrow = "↓" if str(sub.iloc[0].direction) == "lower" else "↑"
        ax.set_title(f"{dataset} · {metric} {arrow}")
        ax.set_xticks(range(len(tokenizers)), [tokenizer_name(t) for t in tokenizers],
                      rotation=30 if len(tokenizers) > 4 else 0)
        if i == 0:
            ax.legend(frameon=False, ncol=min(3, len(variants)))
        if has_delta:
            dax = fig.add_subplot(grid[block * 2 + 1, col], sharex=ax)
            dax.axhline(0.0, color="0.5", lw=0.7)
            for j, v in enumerate(variants):
                for k, t in enumerate(tokenizers):
                    r = sub[(sub["tokenizer"] == t) & (sub["variant"] == v)]
                    if r.empty or not _finite(r.iloc[0].delta_vs_base):
                        continue
                    r = r.iloc[0]
                    d, x = float(r.delta_vs_base), k + (j - (len(variants) - 1) / 2) * width
                    lo, hi = pd.to_numeric(pd.Series([r.delta_lo, r.delta_hi]), errors="coerce")
                    err = [[d - lo], [hi - d]] if _finite(lo) and _finite(hi) else None
                    excludes = err is not None and is_effect(float(lo), float(hi))
                    dax.errorbar([x], [d], yerr=err, fmt="o", ms=3, capsize=2, color=colours[v],
                                 mfc=colours[v] if excludes else "white", elinewidth=0.8)
            dax.set_ylabel("Δ vs base", fontsize=6)
            dax.tick_params(labelbottom=False)
    return _png(fig), has_delta


@dataclass(frozen=True)
class Band:
    """One column of one line over seeds: per step the mean and the min–max over the seeds that logged it."""

    step: np.ndarray
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    seeds: int


def seed_band(logs: list[pd.DataFrame], column: str, max_points: int = 150) -> Band | None:
    """Mean and min–max of `column` over the seeds' logs, step by step (a step counts the seeds that
    logged it: a validation column is logged every few steps only), thinned to `max_points` steps."""
    parts = [d[["step", column]].dropna() for d in logs if column in d]
    parts = [p for p in parts if not p.empty]
    if not parts:
        return None
    g = pd.concat(parts).groupby("step")[column]
    stats = pd.DataFrame({"mean": g.mean(), "lo": g.min(), "hi": g.max()}).sort_index()
    if len(stats) > max_points:  # keeps the first and the last step
        stats = stats.iloc[np.unique(np.linspace(0, len(stats) - 1, max_points).round().astype(int))]
    return Band(stats.index.to_numpy(), stats["mean"].to_numpy(), stats["lo"].to_numpy(), stats["hi"].to_numpy(),
                len(parts))


def is_validation(column: str) -> bool:
    return column.startswith(VALIDATION_PREFIXES)


def ordered_columns(columns: list[str]) -> list[str]:
    """Training columns in log order, each validation column right after its training column
    (`val_loss` beside `loss`); one without a training column at the end."""
    train = [c for c in columns if not is_validation(c)]
    val = [c for c in columns if is_validation(c)]
    out: list[str] = []
    for c in train:
        out.append(c)
        out += [v for v in val if v[4:] == c]
    return out + [v for v in val if v not in out]


def curves_figure(panels: list[tuple[str, dict[str, Band]]], colours: dict[str, str]) -> bytes:
    """`panels`: (title, {line label: band}) in order; one subplot each, lines coloured by `colours`."""
    plt = _plt()
    from matplotlib.ticker import LogLocator, MaxNLocator

    ncols = min(5, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.3 * ncols + 0.3, 1.75 * nrows + 0.5), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (title, lines) in zip(axes.flat, panels):
        values = np.concatenate([b.mean for b in lines.values()])
        for label, b in lines.items():
            few = len(b.step) < 5  # a short run's few log steps: marked, or a single step would not show
            ax.plot(b.step, b.mean, lw=1.0, color=colours[label], label=label, marker="o" if few else None, ms=2.5)
            if b.seeds > 1:
                ax.fill_between(b.step, b.lo, b.hi, color=colours[label], alpha=0.2, lw=0)
        if values.size and np.all(values > 0) and values.max() / values.min() > 30:
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("step", fontsize=6)
        ax.xaxis.set_major_locator(MaxNLocator(4, integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(4) if ax.get_yscale() == "linear" else LogLocator(numticks=4))
    handles = {lab: h for ax in axes.flat for h, lab in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="upper center", ncol=min(8, len(handles)), frameon=False,
               bbox_to_anchor=(0.5, 1.0))
    _margins(fig, top=0.55, bottom=0.35, hspace=0.8)
    return _png(fig)


def usage_figure(runs: list[tuple[str, np.ndarray]]) -> bytes:
    """`runs`: (label, count of each code on the test split); sorted frequencies on a log axis, the
    code rank as a fraction of the codebook so codebooks of different sizes compare."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 2.6))
    for label, counts in runs:
        k = len(counts)
        freq = np.sort(counts)[::-1] / max(1, counts.sum())
        used = freq > 0
        ax.step(np.arange(1, k + 1)[used] / k, freq[used], where="post", lw=1.0,
                label=f"{label}: {used.mean():.0%} of {k} codes used")
    ax.set_yscale("log")
    ax.set_xlabel("code rank / codebook size")
    ax.set_ylabel("share of test-split tokens")
    ax.legend(frameon=False, fontsize=5.5, ncol=2, loc="upper right")
    _margins(fig, left=0.6, top=0.15, bottom=0.45)
    return _png(fig)
