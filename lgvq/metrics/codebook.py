"""Codebook statistics over a whole split (not per batch): usage = fraction of the K codes used
at least once; perplexity = exp(entropy) of the code frequencies; dead codes = K - used."""

from __future__ import annotations

import numpy as np


def codebook_statistics(codes: np.ndarray, codebook_size: int) -> dict[str, float]:
    flat = np.asarray(codes).reshape(-1)
    if flat.size == 0:
        raise ValueError("no codes to count")
    if flat.min() < 0 or flat.max() >= codebook_size:
        raise ValueError(f"codes outside [0, {codebook_size}): min {flat.min()}, max {flat.max()}")
    counts = np.bincount(flat, minlength=codebook_size)
    p = counts[counts > 0] / flat.size
    used = int((counts > 0).sum())
    return {"usage": used / codebook_size, "perplexity": float(np.exp(-(p * np.log(p)).sum())),
            "dead_codes": codebook_size - used, "used_codes": used}
