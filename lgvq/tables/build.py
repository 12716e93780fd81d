"""Build a paper table from metric records and render it to csv / md / tex (no torch here).

Long form first (one line per row x dataset column x metric): ours (mean, std over seeds, n),
the paper's value, and +LG - base for the same tokenizer. A cell we did not compute says why;
a paper value is never shown as ours, and an FID computed with another extractor never lands
in the paper's Inception column (the metric key carries the extractor).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from lgvq.io import atomic_write_text
from lgvq.metrics.record import MetricRecord
from lgvq.tables.files import table_file
from lgvq.tables.names import ANY_TOKENIZER, display_name
from lgvq.tables.paper import Row, is_percent, lower_is_better, table_spec
from lgvq.tables.stats import NO_DELTA, paired_delta
from lgvq.tables.targets import baseline_note
from lgvq.train.convergence import not_converged_note

COLUMNS = ["row", "row_kind", "tokenizer", "variant", "dataset", "metric", "direction", "ours_mean", "ours_std",
           "n_seeds", "seeds", "paper", "delta_vs_base", "delta_lo", "delta_hi", "delta_n", "delta_excludes_zero",
           "status", "note"]

# A record whose variant is "baseline:<name>" or "ceiling:<name>" is a reference point of the table (a trivial
# predictor, real-vs-real), not a model: its row comes after the models, is labelled by its kind and has no Δ.
# Its tokenizer is "*" (ANY_TOKENIZER) when it does not depend on a tokenizer run.
REFERENCE_KINDS = ("baseline", "ceiling")


def row_kind(variant: str) -> str:
    kind = variant.split(":", 1)[0]
    return kind if kind in REFERENCE_KINDS and ":" in variant else "model"


def reference_label(tokenizer: str, variant: str) -> str:
    kind, name = variant.split(":", 1)
    return f"{kind}: {name}" + ("" if tokenizer == ANY_TOKENIZER else f" ({tokenizer})")


def as_record(rec: MetricRecord | dict[str, Any]) -> MetricRecord:
    """A record read from disk (a dict with its `_source`) or already typed."""
    return rec if isinstance(rec, MetricRecord) else MetricRecord.from_json(rec)


def _scale(metric: str, v: float) -> float:
    return 100.0 * v if is_percent(metric) else v


def build_table(table_id: str, records: Iterable[dict[str, Any]], *,
                dataset_columns: dict[str, str | None], provenance: dict[str, str] | None = None) -> pd.DataFrame:
    """`provenance`: tokenizer name -> how its weights came ("frozen", "fine-tuned"), shown in its rows' labels."""
    spec = table_spec(table_id)
    recs = [r for r in map(as_record, records) if r.kind in spec.kinds]
    column_of = {ds: (dataset_columns.get(ds) or ds) for ds in {r.dataset for r in recs} | set(dataset_columns)}
    our_columns = sorted({column_of[ds] for ds in dataset_columns})
    columns = list(dict.fromkeys([*spec.paper_columns, *our_columns]))
    # ours grouped by (tokenizer, variant, column, metric)
    values: dict[tuple, dict[int, float]] = {}
    # (tokenizer, variant, column, metric family) -> why a run that exists left that metric out
    not_computed: dict[tuple, str] = {}
    for r in recs:
        for family, reason in r.not_computed.items():
            not_computed[(r.tokenizer, r.variant, column_of[r.dataset], family)] = str(reason)
        for metric, v in r.metrics.items():
            if isinstance(v, float) and math.isnan(v):
                continue
            values.setdefault((r.tokenizer, r.variant, column_of[r.dataset], metric), {})[r.seed] = _scale(metric, float(v))
    metrics = list(spec.metrics)
    for (_, _, _, m) in values:
        if m not in metrics and (m.split("[")[0] in {x.split("[")[0] for x in spec.metrics}):
            metrics.append(m)  # e.g. FID[shapes-cnn] beside the paper's FID[inception]
    rows: list[Row] = list(spec.rows)
    known = {(r.tokenizer, r.variant) for r in rows}
    references: list[Row] = []
    for (tok, var, _, _) in sorted([*values, *not_computed]):
        if (tok, var) in known:
            continue
        if row_kind(var) != "model":
            references.append(Row(reference_label(tok, var), tok, var))
        else:  # a tokenizer the paper does not have (e.g. a user's new one)
            rows.append(Row(display_name(tok, var, (provenance or {}).get(tok)), tok, var))
        known.add((tok, var))
    rows += sorted(references, key=lambda r: (REFERENCE_KINDS.index(row_kind(r.variant)), r.label))
    lines = []
    for row in rows:
        for col in columns:
            for metric in metrics:
                paper = row.paper.get((col, metric))
                seeds = values.get((row.tokenizer, row.variant, col, metric), {}) if row.tokenizer else {}
                reason = not_computed.get((row.tokenizer, row.variant, col, metric.split("[")[0])) if row.tokenizer else None
                if not seeds and paper is None and reason is None:
                    continue
                vals = [seeds[s] for s in sorted(seeds)]
                mean = sum(vals) / len(vals) if vals else math.nan
                std = (math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0) if vals else math.nan
                status, note = "ours", ""
                if not vals:
                    status = "paper only"
                    if row.tokenizer is None:
                        note = "system not run by this harness"
                    elif col not in our_columns:
                        note = f"not run: no {col} dataset configured"
                    elif reason is not None:
                        status, note = "not computed", reason
                    else:
                        note = "not run in this config"
                kind = row_kind(row.variant)
                if kind != "model" and vals:
                    status = kind
                compared = row.tokenizer and row.variant != "base" and kind == "model"
                base = values.get((row.tokenizer, "base", col, metric), {}) if compared else {}
                delta = paired_delta(seeds, base) if (vals and base) else NO_DELTA
                lines.append({"row": row.label, "row_kind": kind, "tokenizer": row.tokenizer or "",
                              "variant": row.variant if row.tokenizer else "",
                              "dataset": col, "metric": metric, "direction": "lower" if lower_is_better(metric) else "higher",
                              "ours_mean": mean, "ours_std": std, "n_seeds": len(vals),
                              "seeds": " ".join(str(s) for s in sorted(seeds)), "paper": paper if paper is not None else math.nan,
                              "delta_vs_base": delta.mean, "delta_lo": delta.lo, "delta_hi": delta.hi,
                              "delta_n": delta.n_pairs, "delta_excludes_zero": delta.excludes_zero,
                              "status": status, "note": note})
    return pd.DataFrame(lines, columns=COLUMNS)


def _fmt(v: float, metric: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.4f}" if metric == "word_code_MSE" else (f"{v:.0f}" if metric == "dead_codes" else f"{v:.2f}")


def _signed(v: float, metric: str) -> str:
    return f"{'+' if v >= 0 else '−'}{_fmt(abs(v), metric)}"


def delta_text(r: Any, metric: str) -> str:
    """`Δ+0.50 [+0.10, +0.90]*`: paired mean difference, its 95 % interval, * where the interval excludes 0;
    `Δ+1 [+1, +1] (equal pairs)` where every pair differed by the same amount (not an effect: lgvq.tables.stats)."""
    out = f"Δ{_signed(r.delta_vs_base, metric)}"
    if not math.isnan(r.delta_lo):
        out += f" [{_signed(r.delta_lo, metric)}, {_signed(r.delta_hi, metric)}]" + ("*" if r.delta_excludes_zero else "")
        if r.delta_lo == r.delta_hi:
            out += " (equal pairs)"
    return out


def _cell(sub: pd.DataFrame, metric: str) -> str:
    if sub.empty:
        return "—"
    r = sub.iloc[0]
    parts = []
    if r.n_seeds:
        ours = _fmt(r.ours_mean, metric)
        if r.n_seeds > 1:
            ours += f" ± {_fmt(r.ours_std, metric)}"
        ours += f" (n={r.n_seeds})"
        if not math.isnan(r.delta_vs_base):
            ours += " " + delta_text(r, metric)
        parts.append(ours)
    else:
        parts.append("not computed" if r.status == "not computed" else "—")
    if not math.isnan(r.paper):
        parts.append(f"paper {_fmt(r.paper, metric)}")
    return " · ".join(parts)


def render_markdown(table_id: str, df: pd.DataFrame, *, experiment: str, notes: dict[str, str]) -> str:
    spec = table_spec(table_id)
    arrow = lambda m: "↓" if lower_is_better(m) else "↑"  # noqa: E731
    pairs = list(dict.fromkeys(zip(df["dataset"], df["metric"]))) if not df.empty else []
    out = [f"# {spec.number}: {table_id}", "", spec.caption, ""]
    if not pairs:
        out += ["_No numbers: nothing in this config feeds this table._", ""]
    else:
        header = ["Model"] + [f"{d} {m}{'%' if is_percent(m) else ''} {arrow(m)}" for d, m in pairs]
        out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for label in dict.fromkeys(df["row"]):
            sub = df[df["row"] == label]
            cells = [_cell(sub[(sub.dataset == d) & (sub.metric == m)], m) for d, m in pairs]
            out.append("| " + " | ".join([label, *cells]) + " |")
        out.append("")
    seeds = sorted({s for v in df.get("seeds", []) for s in str(v).split()}) if not df.empty else []
    out += ["Cells: ours as mean ± sample std over seeds (n = number of seeds); Δ = this variant minus the same "
            "tokenizer's base, paired by seed, with its 95 % t-interval over the seed pairs in brackets (none with "
            "fewer than 2 pairs) and * where the interval excludes 0: only those differences are effects ("
            "an interval of zero width, every pair differing by the same amount, is not one: `(equal pairs)`). "
            "`baseline: …` / `ceiling: …` rows are reference points computed by the DAG (a trivial predictor, the "
            "real data scored by the same metric), not models. `paper` = the number printed in the paper (real "
            "data, Inception FID, CLIP text encoder), never computed here.",
            f"Experiment `{experiment}`; seeds: {', '.join(seeds) or 'none'}. A seed fixes the tokenizer's training "
            "(initialisation, data order, LG word masks) and the training of any head on its codes; evaluation "
            "masks and samples use eval.mask_eval_seed. A frozen checkpoint has no training and is evaluated once (n=1).",
            "PSNR/SSIM: per image, RGB, uint8, data_range 255, averaged over images. FID[x]: clean-fid (clean mode) "
            "with feature extractor x. CIDEr-D as in pycocoevalcap (no SPICE). Percent metrics (usage, recall, "
            "accuracy, WUPS) are shown ×100."]
    if spec.note:
        out.append(f"Note: {spec.note}")
    for reason in sorted({n for n in df.get("note", []) if n}):
        out.append(f"— : {reason}")
    for k, v in sorted(notes.items()):
        out.append(f"- {k}: {v}")
    return "\n".join(out) + "\n"


def render_latex(table_id: str, df: pd.DataFrame) -> str:
    spec = table_spec(table_id)
    pairs = list(dict.fromkeys(zip(df["dataset"], df["metric"]))) if not df.empty else []
    esc = lambda s: str(s).replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")  # noqa: E731
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{esc(spec.caption)} (ours / paper)}}",
             r"\begin{tabular}{l" + "c" * len(pairs) + "}", r"\toprule",
             " & ".join(["Model"] + [esc(f"{d} {m}") + (r" $\downarrow$" if lower_is_better(m) else r" $\uparrow$")
                                     for d, m in pairs]) + r" \\", r"\midrule"]
    for label in dict.fromkeys(df["row"]) if pairs else []:
        sub = df[df["row"] == label]
        cells = []
        for d, m in pairs:
            c = sub[(sub.dataset == d) & (sub.metric == m)]
            if c.empty:
                cells.append("--")
                continue
            r = c.iloc[0]
            ours = _fmt(r.ours_mean, m) if r.n_seeds else "--"
            paper = _fmt(r.paper, m) if not math.isnan(r.paper) else "--"
            cells.append(f"{ours} / {paper}")
        lines.append(" & ".join([esc(label), *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def dataset_stats_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for r in records:
        for split, stats in r["statistics"].items():
            rows.append({"dataset": r["dataset"], "split": split, **stats})
    return pd.DataFrame(rows)


def job_notes(execution: dict[str, str] | None, machines: str | None) -> dict[str, str]:
    """A table's notes on how the jobs behind it ran: each way that was not fp32 eager (`execution`: {how: an
    example job}) and a mix of device models (`machines`, pipeline.tables.machines_note)."""
    notes = {f"execution: {how}": f"not fp32 eager (e.g. {example})"
             for how, example in sorted((execution or {}).items())}
    if machines:
        notes["machines"] = machines
    return notes


def write_table(table_id: str, records: list[dict[str, Any]], out_dir: str | Path, *,
                dataset_columns: dict[str, str | None], experiment: str = "",
                provenance: dict[str, str] | None = None, execution: dict[str, str] | None = None,
                budget_note: str | None = None, machines: str | None = None) -> list[Path]:
    """`provenance`: as `build_table`. `execution`: {how jobs behind the table executed, when not fp32
    eager: an example job}, named in the notes. `budget_note` (config `references.budget_note`) follows the
    'baselines' note when there is one: which profile to read for the rows that do not clear theirs."""
    out = Path(out_dir)
    paths = [table_file(out, table_id, ext) for ext in ("csv", "md", "tex")]
    if table_id == "dataset_stats":
        df = dataset_stats_table(records)
        atomic_write_text(paths[0], df.to_csv(index=False))
        md = "# Dataset statistics\n\n" + (df.to_markdown(index=False) if not df.empty else "_no datasets_") + "\n"
        atomic_write_text(paths[1], md)
        atomic_write_text(paths[2], df.to_latex(index=False) if not df.empty else "% no datasets\n")
        return paths
    records = [as_record(r) for r in records]
    df = build_table(table_id, records, dataset_columns=dataset_columns, provenance=provenance)
    notes: dict[str, str] = {}
    for r in records:
        for k, v in r.notes.items():
            notes.setdefault(k, f"{v} (e.g. {r.tokenizer}/{r.variant}/seed{r.seed})")
    notes.update(job_notes(execution, machines))
    flagged = not_converged_note(records)  # runs whose loss still fell > 5 % over their last fifth
    if flagged:
        notes["convergence"] = flagged
    below = baseline_note(df)  # model rows that do not beat their strongest baseline by the seed spread
    if below:
        notes["baselines"] = below + (f". {budget_note}" if budget_note else "")
    atomic_write_text(paths[0], df.to_csv(index=False))
    atomic_write_text(paths[1], render_markdown(table_id, df, experiment=experiment, notes=notes))
    atomic_write_text(paths[2], render_latex(table_id, df))
    return paths
