"""Differences between two runs of a table, paired by seed, with a 95 % interval.

A variant (+LG, an ablation row) and its base share seeds: seed s fixes the initialisation and
the data order of both, so the difference at seed s removes the run-to-run variation the two
have in common. The interval is the Student-t interval of the paired differences; with fewer
than two pairs there is no interval, and a cell without one is never called an effect. Nor is one
whose interval has zero width: every pair differed by the same amount (a coarse count on two seeds
does that), so the spread is unmeasured, not absent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Delta:
    mean: float            # variant − base: mean of the paired differences (difference of means when unpaired)
    lo: float              # 95 % interval of the mean difference; NaN with < 2 pairs
    hi: float
    n_pairs: int           # seeds both runs have (0: no seed in common, `mean` is a difference of means)

    @property
    def excludes_zero(self) -> bool:
        return is_effect(self.lo, self.hi)


def is_effect(lo: float, hi: float) -> bool:
    """An interval (from a table row) that excludes 0 and has a width: the one rule for * and filled markers."""
    return not (math.isnan(lo) or math.isnan(hi)) and lo < hi and (lo > 0 or hi < 0)


NO_DELTA = Delta(math.nan, math.nan, math.nan, 0)


def t_quantile_975(df: int) -> float:
    """The 97.5 % quantile of Student's t with `df` degrees of freedom (scipy: a dependency of scikit-image)."""
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def paired_delta(variant: dict[int, float], base: dict[int, float]) -> Delta:
    """`variant`, `base`: seed -> value. Paired over the seeds both have."""
    if not variant or not base:
        return NO_DELTA
    shared = sorted(set(variant) & set(base))
    if not shared:
        mean = sum(variant.values()) / len(variant) - sum(base.values()) / len(base)
        return Delta(mean, math.nan, math.nan, 0)
    diffs = [variant[s] - base[s] for s in shared]
    n = len(diffs)
    mean = sum(diffs) / n
    if n < 2:
        return Delta(mean, math.nan, math.nan, n)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = t_quantile_975(n - 1) * sd / math.sqrt(n)
    return Delta(mean, mean - half, mean + half, n)
