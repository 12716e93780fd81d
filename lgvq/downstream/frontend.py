"""The code-feature front end every understanding head shares.

codes (B, h, w) -> (B, h*w, width): each code is replaced by its (frozen) codebook vector, mapped
by a trained linear layer, plus a learned position embedding per grid cell. The codebook is a
buffer, not a parameter: the heads measure what the tokenizer's codes carry, they do not retune it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CodeFrontEnd(nn.Module):
    def __init__(self, codebook: Tensor, grid: tuple[int, int], width: int) -> None:
        super().__init__()
        if codebook.ndim != 2:
            raise ValueError(f"codebook must be (K, D), got {tuple(codebook.shape)}")
        self.register_buffer("codebook", codebook.detach().float().clone())
        self.grid = (int(grid[0]), int(grid[1]))
        self.width = width
        self.proj = nn.Linear(codebook.shape[1], width)
        self.pos = nn.Parameter(torch.randn(1, self.grid[0] * self.grid[1], width) * 0.02)

    @property
    def n_tokens(self) -> int:
        return self.grid[0] * self.grid[1]

    def forward(self, codes: Tensor) -> Tensor:
        if tuple(codes.shape[1:]) != self.grid:
            raise ValueError(f"code grid {tuple(codes.shape[1:])} does not match the head's grid {self.grid}")
        if int(codes.max()) >= len(self.codebook) or int(codes.min()) < 0:
            raise ValueError(f"codes outside [0, {len(self.codebook)})")
        return self.proj(F.embedding(codes.flatten(1).long(), self.codebook)) + self.pos
