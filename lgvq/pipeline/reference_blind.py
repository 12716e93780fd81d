"""`baseline: blind-head` (VQA) and `baseline: text-only-head` (grounding) (lgvq.pipeline.references): the task's
head, its architecture, settings and step budget unchanged, trained and evaluated on the text alone — every
image's code grid replaced by one constant grid — so the gap between a model's row and this one is what the
codes carry beyond the question / expression.

The head is the task's own (lgvq.downstream.vqa / grounding via the HEADS registry), trained by the same loop
(lgvq.train.loop) under the same seed; only its code tables are `ConstantCodes`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lgvq.pipeline import jobs, paths
from lgvq.pipeline.common import dataset_source, process_group
from lgvq.pipeline.reference_jobs import Measured
from lgvq.pipeline.references import Reference
from lgvq.settings import dataset_settings, downstream_settings

BLIND_GRID = (1, 1)  # one constant code: the question's positions stay those of a 1-token prefix


class ConstantCodes:
    """Stands in for a CodeTable (lgvq.pipeline.artifacts): every image has the same all-zero code grid, so a
    head reading it cannot tell one image from another."""

    def __init__(self, grid: tuple[int, int] = BLIND_GRID) -> None:
        self.codes = np.zeros((1, *grid), dtype=np.int64)
        self.grid = tuple(grid)

    def __call__(self, image_id: int) -> int:
        return 0

    def batch(self, rows: list[int], device) -> torch.Tensor:
        return torch.as_tensor(self.codes[rows], dtype=torch.long, device=device)


def blind_setup(cfg: dict[str, Any], task: str, dataset: str, source, device, seed: int):
    """The task's HeadSetup on constant codes (a 1-entry zero codebook): its model sees the question only."""
    from lgvq.downstream.frontend import CodeFrontEnd
    from lgvq.downstream.registry import HEADS, HeadContext

    head = HEADS.get(task, key="--task")
    d = downstream_settings(cfg, task)
    codes = ConstantCodes()
    frontend = CodeFrontEnd(torch.zeros(1, 1), codes.grid, head.prefix_width(d) or d.width, conv_layers=d.frontend_conv)
    return head.setup(HeadContext(d, dataset_settings(cfg, dataset), source, frontend, codes, codes, device, seed))


def blind_head(cfg: dict[str, Any], ref: Reference, dataset: str, tokenizer: None, seed: int) -> dict[str, Measured]:
    from lgvq.downstream.task import HeadTask
    from lgvq.manifest import config_hash
    from lgvq.train.loop import seed_everything, shuffled_batches, train_loop

    (kind,) = ref.kinds
    d = downstream_settings(cfg, kind)  # the settings of the heads it controls for (downstream.per_task)
    _, dev = process_group(cfg)
    seed_everything(seed)
    setup = blind_setup(cfg, kind, dataset, dataset_source(cfg, dataset), dev, seed)
    model = setup.model.to(dev)
    # The same execution as the heads it controls for (lgvq.pipeline.downstream): CPU bf16 autocast too.
    trainer = HeadTask(model, setup.loss_terms, lr=d.lr, fast_path=d.fast_path, cpu_bf16=d.cpu_bf16)
    work = paths.reference_dir(cfg["results_dir"], kind, dataset, ref.name, None, seed) / "head"
    state = train_loop(trainer, shuffled_batches(setup.n_train, d.batch_size, seed, setup.make_batch,
                                                 key="downstream.batch_size"),
                       out_dir=work, max_steps=d.steps, seed=seed,
                       config_hash=config_hash(jobs.reference(cfg, ref.name, dataset, None, seed)),
                       ckpt_every=d.ckpt_every, log_every=max(1, min(10, d.steps)), desc=f"{ref.name}/seed{seed}")
    model.eval()
    ev = setup.evaluate(model)
    how = (f"the {kind} head ({type(model).__name__}: width {d.width}, {d.layers} layers, {d.heads} heads, "
           + (f"{d.frontend_conv} 3x3 conv layers over the code grid, " if d.frontend_conv else "")
           + f"{d.steps} steps, batch {d.batch_size}, seed {seed}) on the question alone: every code grid "
           f"replaced by one constant {BLIND_GRID[0]}x{BLIND_GRID[1]} grid (the text alone)")
    notes = {m: f"{ev.notes.get(m, m)}; {how}" for m in ev.metrics}
    return {kind: Measured(ev.metrics, notes, labels={"head": how}, execution=trainer.execution.record(),
                           training=state.record())}
