"""Any understanding head as a `TrainTask` of the one training loop (resume, logs, progress)."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from lgvq.train.distributed import SINGLE, DistInfo, GradientReducer
from lgvq.train.precision import Execution


class HeadTask:
    """`loss_terms(model, batch)` returns named loss terms; their sum is minimised with AdamW.
    Data parallel (`dist`): each rank's batch is its share, gradients are averaged before clipping.
    `fast_path` (the stage's own switch; CUDA only, the model already on its device): the loss terms
    run under bf16 autocast with TF32 for what stays fp32, and AdamW is fused. On the CPU the step
    is fp32 eager whatever `fast_path` says; `cpu_bf16` (on | auto | off) runs it under CPU bf16 autocast
    instead (lgvq.train.precision)."""

    def __init__(self, model: nn.Module, loss_terms: Callable[[nn.Module, Any], dict[str, Tensor]], *,
                 lr: float, weight_decay: float = 0.01, grad_clip: float = 1.0, dist: DistInfo = SINGLE,
                 fast_path: bool = False, cpu_bf16: str = "off") -> None:
        self.model = model
        self.dist = dist
        self.loss_terms = loss_terms
        self.grad_clip = grad_clip
        self.execution = Execution.of_module(model, fast_path, cpu_bf16=cpu_bf16)
        self.opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                                     weight_decay=weight_decay, **self.execution.optimizer_kwargs())
        self.reducer = GradientReducer(model.parameters(), dist)  # bucketed, overlapping the backward

    def modules(self) -> Mapping[str, nn.Module]:
        return {"head": self.model}

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        return {"adamw": self.opt}

    def train_step(self, batch: Any, step: int) -> dict[str, Tensor]:
        # Detached device tensors: the loop checks them for NaN/inf and logs them once per log window.
        with self.execution.autocast():  # parameters and their gradients stay fp32
            terms = self.loss_terms(self.model, batch)
        loss = sum(t.float() for t in terms.values())  # reduced in fp32 whatever the autocast produced
        self.opt.zero_grad(set_to_none=True)
        with self.reducer.final_backward():
            loss.backward()
        self.reducer.finish()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.opt.step()
        return {k: v.detach() for k, v in terms.items()}
