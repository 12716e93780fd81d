"""The module every second-stage task trains: its generator and what conditions it."""

from __future__ import annotations

from torch import nn


class CodeGenerator(nn.Module):
    """`net`: the generator over the code sequence (CodeGPT, TextToCodeDiffusion, ...); `cond`: the
    module that turns a condition into the generator's input (label-code or text embeddings), or
    None. The task (lgvq.stage2.registry.Stage2Task) says how they are used; the checkpoint layout
    (`net.*`, `cond.*`) is the same for every task."""

    def __init__(self, net: nn.Module, grid: tuple[int, int], cond: nn.Module | None = None) -> None:
        super().__init__()
        self.grid = grid
        self.net = net
        self.cond = cond
