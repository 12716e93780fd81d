"""The paper's codebook picture (Fig. 7, following Reg-VQ): every code decoded as a 1x1
latent, the small images tiled into one grid."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from lgvq.io import atomic_path


@torch.no_grad()
def codebook_picture(tokenizer, path: str | Path, max_codes: int = 1024) -> Path:
    from lgvq.imagegrid import save_png_grid

    k = min(tokenizer.codebook_size, max_codes)
    codes = torch.arange(k, device=next(tokenizer.parameters()).device).view(k, 1, 1)
    tiles = tokenizer.decode_codes(codes).clamp(-1, 1).cpu() * 0.5 + 0.5
    with atomic_path(path) as tmp:
        save_png_grid(tiles, tmp, nrow=int(math.ceil(math.sqrt(k))), padding=1)
    return Path(path)
