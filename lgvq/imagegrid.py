"""Image grids as PNG files, written with PIL.

The same bytes as torchvision's `save_image(images, path, nrow, padding, pad_value, format="png")`
(tests/test_imagegrid.py compares them), without importing torchvision: a tokenizer, stage-2 or
evaluation job would otherwise import torchvision only for this, and torchvision imports
torch._dynamo (seconds per job; benchmarks/bench_cpu_speed.py measures it).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image


def grid(images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 0.0) -> torch.Tensor:
    """(B, C, H, W) -> (C, H', W'): `nrow` images per row, `padding` pixels of `pad_value` around each
    (one image alone is returned unpadded, as torchvision does); one channel is repeated to three."""
    if images.dim() != 4:
        raise ValueError(f"image grid: expected a (B, C, H, W) batch, got shape {tuple(images.shape)}")
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if images.shape[0] == 1:
        return images[0]
    n, c, h, w = images.shape
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    cell_h, cell_w = h + padding, w + padding
    out = images.new_full((c, cell_h * rows + padding, cell_w * cols + padding), pad_value)
    for k in range(n):
        y, x = divmod(k, cols)
        out[:, y * cell_h + padding: y * cell_h + padding + h, x * cell_w + padding: x * cell_w + padding + w] = images[k]
    return out


def save_png_grid(images: torch.Tensor, path: str | Path, nrow: int = 8, padding: int = 2,
                  pad_value: float = 0.0) -> None:
    """Write images with values in [0, 1] as one PNG grid (values outside are clipped)."""
    g = grid(images.detach(), nrow, padding, pad_value)
    # torchvision's rounding: x * 255 + 0.5, clamped, truncated to uint8
    pixels = g.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to("cpu", torch.uint8).numpy()
    Image.fromarray(pixels).save(path, format="png")
