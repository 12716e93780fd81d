"""Codebook statistics over a whole split (not per batch), from integer code arrays.

- usage: fraction of the K codes used at least once over everything passed in (the paper's Fig. 7
  percentages; per-batch usage would be lower and depend on the batch size);
- perplexity: exp of the entropy (natural log) of the code frequencies — the effective number of
  codes in use; K for perfectly uniform use, 1 when a single code is used;
- dead codes: K - used.
numpy only, on purpose: this is the metrics-side source of truth and must not need a model.
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np


class CodebookStats(TypedDict):
    usage: float
    perplexity: float
    dead_codes: int
    used_codes: int
    codebook_size: int
    n_codes: int


def code_counts(codes: np.ndarray, codebook_size: int) -> np.ndarray:
    """(K,) how often each code occurs in `codes` (any shape, integer dtype)."""
    if int(codebook_size) < 1:
        raise ValueError(f"codebook_size must be positive, got {codebook_size}")
    flat = np.asarray(codes).reshape(-1)
    if flat.size == 0:
        raise ValueError("no codes to count")
    if not np.issubdtype(flat.dtype, np.integer):
        raise TypeError(f"codes must be integers, got dtype {flat.dtype}")
    if flat.min() < 0 or flat.max() >= codebook_size:
        raise ValueError(f"codes outside [0, {codebook_size}): min {flat.min()}, max {flat.max()}")
    return np.bincount(flat.astype(np.int64), minlength=int(codebook_size))


def code_counts_by_chunks(codes, codebook_size: int, chunk: int = 4096) -> np.ndarray:
    """`code_counts` of a split read `chunk` grids at a time (`codes`: anything with len() and row
    slicing, e.g. an on-disk `lgvq.arrays.RowArray`): the split is never held."""
    if len(codes) == 0:
        raise ValueError("no codes to count")
    return sum(code_counts(codes[i : i + chunk], codebook_size) for i in range(0, len(codes), chunk))


def codebook_statistics(codes: np.ndarray, codebook_size: int) -> CodebookStats:
    return statistics_from_counts(code_counts(codes, codebook_size))


def statistics_from_counts(counts: np.ndarray) -> CodebookStats:
    """The statistics of (K,) code counts (`code_counts`)."""
    codebook_size = len(counts)
    p = counts[counts > 0] / counts.sum()
    used = int((counts > 0).sum())
    return CodebookStats(usage=used / int(codebook_size), perplexity=float(np.exp(-(p * np.log(p)).sum())),
                         dead_codes=int(codebook_size) - used, used_codes=used, codebook_size=int(codebook_size),
                         n_codes=int(counts.sum()))
