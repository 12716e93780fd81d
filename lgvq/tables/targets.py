"""Does each learned number clear its trivial baseline? (issue 23, item 6)

A model row *clears* a metric's baseline when its mean is better than the strongest `baseline: …` row of
that metric (higher or lower, as the metric's direction says) by more than the seed spread: the larger of
the two rows' standard deviations over seeds. Compared only within one dataset and against baselines that
apply to the row's tokenizer (data-only baselines, tokenizer `*`, apply to every row; `shuffled-codes
(vqgan)` only to VQ-GAN rows). Ceilings are not baselines. With one seed on both sides the spread is
unknown and the verdict says so instead of guessing.

    verdicts(df)      -> one Verdict per (model row, metric) that has a baseline
    baseline_note(df) -> the table note naming the rows that do not clear theirs (None when all do)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from lgvq.tables.names import ANY_TOKENIZER


@dataclass(frozen=True)
class Verdict:
    row: str
    metric: str
    mean: float
    baseline_row: str
    baseline_mean: float
    margin: float      # how far the row is better than the baseline (negative: worse), in the table's units
    spread: float      # the larger seed standard deviation of the two rows (nan: one seed on both sides)
    verdict: str       # "clears", "does not clear", "spread unknown (one seed)"


def _better_by(direction: str, mean: float, base: float) -> float:
    return base - mean if direction == "lower" else mean - base


def verdicts(df: pd.DataFrame) -> list[Verdict]:
    """Every model row's metric against the strongest baseline that applies to it (module docstring)."""
    scored = df[df["ours_mean"].notna()]
    models, baselines = scored[scored["row_kind"] == "model"], scored[scored["row_kind"] == "baseline"]
    out = []
    for _, m in models.iterrows():
        cands = baselines[(baselines["metric"] == m["metric"]) & (baselines["dataset"] == m["dataset"])
                          & baselines["tokenizer"].isin([ANY_TOKENIZER, m["tokenizer"]])]
        if cands.empty:
            continue
        direction = str(m["direction"])
        best = cands.loc[(cands["ours_mean"].idxmin() if direction == "lower" else cands["ours_mean"].idxmax())]
        margin = _better_by(direction, float(m["ours_mean"]), float(best["ours_mean"]))
        one_seed = int(m["n_seeds"]) < 2 and int(best["n_seeds"]) < 2
        spread = math.nan if one_seed else max(float(m["ours_std"] or 0.0) if int(m["n_seeds"]) > 1 else 0.0,
                                               float(best["ours_std"] or 0.0) if int(best["n_seeds"]) > 1 else 0.0)
        if margin <= 0:
            verdict = "does not clear"
        elif one_seed:
            verdict = "spread unknown (one seed)"
        else:
            verdict = "clears" if margin > spread else "does not clear"
        out.append(Verdict(str(m["row"]), str(m["metric"]), float(m["ours_mean"]), str(best["row"]),
                           float(best["ours_mean"]), margin, spread, verdict))
    return out


def baseline_note(df: pd.DataFrame) -> str | None:
    """'does not clear its baseline by more than the seed spread: <row> <metric> <mean> vs <baseline> <mean>; …'"""
    failing = [v for v in verdicts(df) if v.verdict != "clears"]
    if not failing:
        return None
    parts = []
    for v in failing:
        why = "one seed: spread unknown" if v.verdict.startswith("spread") else (
            "worse" if v.margin < 0 else "not better" if v.margin == 0 else f"margin {v.margin:.2f} <= spread {v.spread:.2f}")
        parts.append(f"{v.row} {v.metric} {v.mean:.2f} vs {v.baseline_row} {v.baseline_mean:.2f} ({why})")
    return ("not clearing the strongest baseline by more than the seed spread (lgvq/tables/targets.py): "
            + "; ".join(parts))
