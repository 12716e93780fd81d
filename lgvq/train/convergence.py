"""Whether a training run reached a plateau, measured on its logged curve (no torch here).

The rule (issue 23): a run whose loss still falls by more than `threshold` (5 %) over the last
`fraction` (a fifth) of its steps is "not converged". The fall is read off a least-squares line
through the logged points of that last fifth, not two single points, so one noisy log step
neither hides nor fakes a trend: drop = (line at the window's first step - line at the last step)
/ |line at the first step|. The validation loss is used where the run logged one (fixed val
batches, eval mode: deterministic); otherwise the training loss, and the record says which.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

THRESHOLD = 0.05   # relative fall over the window that counts as "still falling"
FRACTION = 0.2     # the window: the last fifth of the steps
MIN_POINTS = 3     # fewer logged points in the window: no verdict (a line through 2 points is one noisy pair)


def relative_drop(points: list[tuple[float, float]]) -> float:
    """(step, value) points -> fall of their least-squares line from the first to the last step, relative
    to the line's value at the first step (positive = still falling)."""
    n = len(points)
    mx = sum(s for s, _ in points) / n
    my = sum(v for _, v in points) / n
    sxx = sum((s - mx) ** 2 for s, _ in points)
    slope = sum((s - mx) * (v - my) for s, v in points) / sxx if sxx > 0 else 0.0
    first, last = points[0][0], points[-1][0]
    start = my + slope * (first - mx)
    return -slope * (last - first) / abs(start) if start != 0 else 0.0


def total_loss(row: Mapping[str, Any], prefix: str) -> float | None:
    """Sum of a log row's terms under `prefix` ("val_" or "" for the training terms); None if it has none."""
    vals = [float(v) for k, v in row.items() if k != "step" and v not in ("", None)
            and (k.startswith(prefix) if prefix else not k.startswith("val_"))]
    vals = [v for v in vals if math.isfinite(v)]
    return sum(vals) if vals else None


def convergence(rows: Iterable[Mapping[str, Any]], *, fraction: float = FRACTION,
                threshold: float = THRESHOLD) -> dict[str, Any] | None:
    """The verdict on one run's log rows (`step` + terms, validation terms prefixed `val_`): a dict with
    `converged`, `relative_drop`, `curve` ("validation" or "training"), `window` ([first, last] step) and
    `points`; None when the log holds too few points for one."""
    rows = [r for r in rows if r.get("step") not in ("", None)]
    if not rows:
        return None
    curve, prefix = ("validation", "val_") if any(total_loss(r, "val_") is not None for r in rows) else ("training", "")
    pts = [(float(r["step"]), total_loss(r, prefix)) for r in rows]
    pts = sorted((s, v) for s, v in pts if v is not None)
    if not pts:
        return None
    last = pts[-1][0]
    window = [(s, v) for s, v in pts if s >= last * (1 - fraction)]
    if len(window) < MIN_POINTS:
        return None
    drop = relative_drop(window)
    return {"converged": bool(drop <= threshold), "relative_drop": round(drop, 4), "curve": curve,
            "window": [int(window[0][0]), int(last)], "points": len(window), "threshold": threshold}


def read_log(path: str | Path) -> list[dict[str, str]]:
    """A training log.csv (lgvq.train.checkpoint.write_log) as rows; [] when there is none."""
    p = Path(path)
    if not p.is_file():
        return []
    with p.open(newline="") as f:
        return list(csv.DictReader(f))


def not_converged_note(records: Iterable[Any]) -> str | None:
    """The table note naming every run flagged not converged (records carry `extra["convergence"]`)."""
    flagged = []
    for r in records:
        c = (r.extra or {}).get("convergence") if hasattr(r, "extra") else None
        if c and not c.get("converged", True):
            what = "val" if c.get("curve") == "validation" else "training"
            flagged.append(f"{r.kind} {r.tokenizer}/{r.variant}/seed{r.seed} ({what} loss −{100 * c['relative_drop']:.1f} % "
                           f"over the last fifth)")
    if not flagged:
        return None
    return ("not converged: " + "; ".join(sorted(set(flagged)))
            + f" — loss still falling by more than {100 * THRESHOLD:.0f} % over the last fifth of steps")
