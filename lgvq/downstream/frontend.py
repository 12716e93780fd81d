"""The code-feature front end every understanding head shares.

codes (B, h, w) -> (B, h*w, width): each code is replaced by its (frozen) codebook vector, mapped
by a trained linear layer, plus a position embedding per grid cell. The codebook is a buffer, not
a parameter: the heads measure what the tokenizer's codes carry, they do not retune it.

`normalize` (downstream.codebook_norm: standardize): the codebook is centred and divided by one
global scale before the projection. A codebook trained briefly from taming's uniform(-1/K, 1/K)
init has entries of norm ~0.05 (measured on the default run's VQ-GAN: 0.056); AdamW moves each
weight by ~lr per step whatever the gradient, so a projection of such inputs needs tens of
thousands of steps before code identity outweighs its bias, and the head learns the prior only.
A translation plus one scale keeps the codebook's geometry (nearest-code order, relative
distances): the head sees the same codes, at a usable scale. The position embedding is a fixed
2-D sine-cosine grid (DETR) plus a learned residual, at the scale of the projected features, so
a cell's position is legible from the first step instead of drowned by its content.

`conv_layers` (downstream.frontend_conv; 0 = none, the paper's input): residual 3x3 convolutions over the
projected code grid before the position code is added, so each token carries its neighbourhood (a code
covers a few pixels; an object's form is a pattern over several codes). On medium's VQA heads: +10 points
of accuracy on both seeds, for ~10 % more job time; their shape questions stay at chance with or without
it (benchmarks/README.md, "which questions do the VQA heads answer?"). See README, differences.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def sincos_2d(grid: tuple[int, int], width: int) -> Tensor:
    """(h*w, width) fixed position code: sin/cos of row and column at geometric frequencies (DETR-style),
    half the channels for rows and half for columns; rows then columns in raster order."""
    h, w = grid
    quarter = max(1, width // 4)
    freq = torch.exp(-math.log(100.0) * torch.arange(quarter, dtype=torch.float32) / quarter)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    parts = [f(c.reshape(-1, 1) * freq) for c in (ys, xs) for f in (torch.sin, torch.cos)]
    pe = torch.cat(parts, 1)
    return F.pad(pe, (0, width - pe.shape[1])) if pe.shape[1] < width else pe[:, :width]


def standardized(codebook: Tensor) -> Tensor:
    """Centred codebook divided by its overall standard deviation (one scale: the geometry is kept)."""
    c = codebook - codebook.mean(0, keepdim=True)
    return c / c.pow(2).mean().sqrt().clamp_min(1e-12)


class GridConv(nn.Module):
    """x + conv3x3(GELU(x)) over a (B, width, h, w) grid: a token sees its 8 neighbours."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(F.gelu(x))


class CodeFrontEnd(nn.Module):
    def __init__(self, codebook: Tensor, grid: tuple[int, int], width: int, *, normalize: bool = True,
                 conv_layers: int = 0) -> None:
        super().__init__()
        if codebook.ndim != 2:
            raise ValueError(f"codebook must be (K, D), got {tuple(codebook.shape)}")
        book = codebook.detach().float().clone()
        self.register_buffer("codebook", standardized(book) if normalize else book)
        self.grid = (int(grid[0]), int(grid[1]))
        self.width = width
        self.normalize = normalize
        self.proj = nn.Linear(codebook.shape[1], width)
        n = self.grid[0] * self.grid[1]
        if normalize:
            self.register_buffer("fixed_pos", sincos_2d(self.grid, width))
        else:  # the original front end: a learned embedding only, small at init
            self.register_buffer("fixed_pos", torch.zeros(n, width))
        self.pos = nn.Parameter(torch.randn(1, n, width) * 0.02)
        if conv_layers < 0:
            raise ValueError(f"conv_layers must be >= 0, got {conv_layers}")
        self.conv = nn.Sequential(*(GridConv(width) for _ in range(conv_layers)))

    @property
    def n_tokens(self) -> int:
        return self.grid[0] * self.grid[1]

    def forward(self, codes: Tensor) -> Tensor:
        if tuple(codes.shape[1:]) != self.grid:
            raise ValueError(f"code grid {tuple(codes.shape[1:])} does not match the head's grid {self.grid}")
        if int(codes.max()) >= len(self.codebook) or int(codes.min()) < 0:
            raise ValueError(f"codes outside [0, {len(self.codebook)})")
        x = self.proj(F.embedding(codes.flatten(1).long(), self.codebook))
        if len(self.conv):
            h, w = self.grid
            grid = x.transpose(1, 2).reshape(len(x), self.width, h, w)
            x = self.conv(grid).flatten(2).transpose(1, 2)
        return x + self.fixed_pos + self.pos
