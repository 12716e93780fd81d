"""The LG dose-response table and its plot (the paper has none).

One tokenizer's +LG run with all three LG weights multiplied by m (variant `lg-x<m>`; x1 is the +LG run of
the other tables, x0 its base run). The table is built by the ordinary builder (lgvq.tables.build: Δ vs base
paired by seed with its 95 % interval); here its rows are named and ordered by multiplier, a column
`lg_multiplier` is added, and `dose_response.png` plots each metric against the multiplier on a log axis.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from lgvq.config import multiplier_text, parse_variant
from lgvq.io import atomic_path, atomic_write_text
from lgvq.metrics.catalogue import metric_info
from lgvq.tables.build import REFERENCE_KINDS, as_record, build_table, job_notes, render_latex, render_markdown
from lgvq.tables.files import table_file
from lgvq.tables.paper import is_percent, lower_is_better, table_spec
from lgvq.tables.stats import t_quantile_975

TABLE_ID = "dose_response"
PLOT_NAME = table_file(".", TABLE_ID, "png").name


def multiplier_of(variant: str) -> float:
    """x0 for the base run, else the variant's LG weight multiplier ("lg" -> 1, "lg-x10" -> 10)."""
    return 0.0 if variant == "base" else parse_variant(variant)[1]


def dose_label(tokenizer: str, multiplier: float) -> str:
    how = " (base)" if multiplier == 0 else (" (+LG)" if multiplier == 1 else "")
    return f"{tokenizer} ×{multiplier_text(multiplier)}{how}"


def metric_rank(metric: str) -> int | None:
    """A metric's column in the table: its place among the declared metrics (any FID[<extractor>] at FID's),
    None for the other metrics the records hold (the builder adds every Recall@1[...] protocol; Table 3 has them)."""
    declared = [m.split("[")[0] if m.startswith("FID[") else m for m in table_spec(TABLE_ID).metrics]
    key = metric.split("[")[0] if metric.startswith("FID[") else metric
    return declared.index(key) if key in declared else None


def _fill_missing(df: pd.DataFrame) -> pd.DataFrame:
    """A "not computed" line for each metric a model row lacks and another has (x0's recall: the base run has
    no masked-text decoder), so every row shows every column and the columns keep the declared order."""
    model = df[df["row_kind"] == "model"]
    pairs = model[["dataset", "metric", "_metric"]].drop_duplicates()
    missing = []
    for (tok, var), rows in model.groupby(["tokenizer", "variant"], sort=False):
        have = set(zip(rows["dataset"], rows["metric"]))
        for d, m, rank in pairs.itertuples(index=False):
            if (d, m) not in have:
                why = ("the base run has no masked-text decoder" if var == "base" and m.split("[")[0] in
                       ("Recall@1", "I2T-R@1", "I2T-R@5") else "no record of this metric for this run")
                missing.append({**rows.iloc[0].to_dict(), "metric": m, "dataset": d, "_metric": rank,
                                "direction": "lower" if lower_is_better(m) else "higher", "ours_mean": math.nan,
                                "ours_std": math.nan, "n_seeds": 0, "seeds": "", "paper": math.nan,
                                "delta_vs_base": math.nan, "delta_lo": math.nan, "delta_hi": math.nan, "delta_n": 0,
                                "delta_excludes_zero": False, "status": "not computed", "note": why})
    return pd.concat([df, pd.DataFrame(missing, columns=df.columns)], ignore_index=True) if missing else df


def dose_frame(records: list[Any], *, dataset_columns: dict[str, str | None]) -> pd.DataFrame:
    """The long-form table (build.COLUMNS + `lg_multiplier`), model rows by ascending multiplier, then any
    baseline/ceiling rows (their multiplier NaN); metrics in the declared order."""
    df = build_table(TABLE_ID, records, dataset_columns=dataset_columns)
    ranks = df["metric"].map(metric_rank)
    df = _fill_missing(df[ranks.notna()].assign(_metric=ranks[ranks.notna()]).reset_index(drop=True))
    model = df["row_kind"] == "model"
    df.insert(4, "lg_multiplier", [multiplier_of(v) if m else math.nan for v, m in zip(df["variant"], model)])
    df.loc[model, "row"] = [dose_label(t, m) for t, m in zip(df.loc[model, "tokenizer"],
                                                             df.loc[model, "lg_multiplier"])]
    rank = df["row_kind"].map(lambda k: 0 if k == "model" else 1 + REFERENCE_KINDS.index(k))
    return (df.assign(_rank=rank).sort_values(["_rank", "tokenizer", "lg_multiplier", "row", "_metric"], kind="stable")
              .drop(columns=["_rank", "_metric"]).reset_index(drop=True))


def _interval(std: float, n: int) -> float:
    """Half-width of the 95 % t-interval of a mean over n seeds (0 with n < 2: no interval is drawn)."""
    return t_quantile_975(n - 1) * std / math.sqrt(n) if n > 1 else 0.0


def plot_dose_response(df: pd.DataFrame, path: Path, *, experiment: str) -> Path:
    """One panel per (dataset, metric): mean over seeds at each multiplier > 0 (log axis) with its 95 %
    t-interval; the base run (x0, which a log axis cannot place) as a dashed line with its interval as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ours = df[(df["row_kind"] == "model") & (df["n_seeds"] > 0)]
    panels = [p for p in dict.fromkeys(zip(df["dataset"], df["metric"]))  # the table's column order
              if p in set(zip(ours["dataset"], ours["metric"]))]
    datasets = {d for d, _ in panels}
    cols = max(1, min(3, len(panels)))
    rows = max(1, math.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    if not panels:
        axes.flat[0].text(0.5, 0.5, "no dose-response numbers in this config", ha="center", va="center")
    for ax, (dataset, metric) in zip(axes.flat, panels):
        sub = ours[(ours["dataset"] == dataset) & (ours["metric"] == metric)].sort_values("lg_multiplier")
        unit = " (%)" if is_percent(metric) else (f" ({metric_info(metric).unit})" if metric_info(metric).unit else "")
        base = sub[sub["lg_multiplier"] == 0]
        if not base.empty:
            b = base.iloc[0]
            half = _interval(b.ours_std, int(b.n_seeds))
            ax.axhline(b.ours_mean, color="grey", linestyle="--", label=f"×0 base (n={b.n_seeds})")
            if half:
                ax.axhspan(b.ours_mean - half, b.ours_mean + half, color="grey", alpha=0.2)
        dosed = sub[sub["lg_multiplier"] > 0]
        if not dosed.empty:
            err = [_interval(s, int(n)) for s, n in zip(dosed["ours_std"], dosed["n_seeds"])]
            ax.errorbar(dosed["lg_multiplier"], dosed["ours_mean"], yerr=err, marker="o", capsize=3,
                        label=f"+LG ×m (n={'/'.join(str(n) for n in dict.fromkeys(dosed['n_seeds']))})")
            ax.set_xscale("log")
            ax.set_xticks(list(dosed["lg_multiplier"]), [f"×{multiplier_text(m)}" for m in dosed["lg_multiplier"]])
        ax.set_title(f"{metric}{unit} {'↓' if lower_is_better(metric) else '↑'}"
                     + (f" · {dataset}" if len(datasets) > 1 else ""), fontsize=9)
        ax.set_xlabel("LG weight multiplier (log)", fontsize=8)
        ax.legend(fontsize=7)
    tokenizers = ", ".join(dict.fromkeys(ours["tokenizer"])) or "—"
    fig.suptitle(f"LG dose-response of {tokenizers} (ours; the paper has none), experiment `{experiment}`: mean over "
                 "seeds, bars/band = 95 % t-interval of the mean (none with n < 2)", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def write_dose_response(table_id: str, records: list[dict[str, Any]], out_dir: str | Path, *,
                        dataset_columns: dict[str, str | None], experiment: str = "",
                        provenance: dict[str, str] | None = None,
                        execution: dict[str, str] | None = None, machines: str | None = None) -> list[Path]:
    """dose_response.{csv,md,tex,png}; the same signature as build.write_table (`provenance` is unused: every
    row is one tokenizer's, named by its multiplier)."""
    if table_id != TABLE_ID:
        raise KeyError(f"write_dose_response writes table '{TABLE_ID}', not '{table_id}'")
    out = Path(out_dir)
    paths = [table_file(out, TABLE_ID, ext) for ext in ("csv", "md", "tex", "png")]
    recs = [as_record(r) for r in records]
    df = dose_frame(recs, dataset_columns=dataset_columns)
    notes: dict[str, str] = {}
    hidden = {m for r in recs for m in r.metrics if m not in set(df["metric"])}  # the records' other metrics
    for r in recs:
        for k, v in r.notes.items():
            if k not in hidden:
                notes.setdefault(k, f"{v} (e.g. {r.tokenizer}/{r.variant}/seed{r.seed})")
    notes.update(job_notes(execution, machines))
    seeds = sorted({s for v in df["seeds"] for s in str(v).split()}, key=int)
    md = render_markdown(TABLE_ID, df, experiment=experiment, notes=notes)
    md += (f"\nPlot: `{PLOT_NAME}` (next to this file): each metric against the LG weight multiplier on a log axis; "
           "points = mean over seeds, bars = 95 % t-interval of the mean; the ×0 base run as a dashed line with its "
           f"band. Dose-response seeds: {', '.join(seeds) or 'none'} (dose_response.seeds).\n")
    atomic_write_text(paths[0], df.to_csv(index=False))
    atomic_write_text(paths[1], md)
    atomic_write_text(paths[2], render_latex(TABLE_ID, df))
    plot_dose_response(df, paths[3], experiment=experiment)
    return paths
