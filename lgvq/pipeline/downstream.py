"""`lgvq downstream run --task <name>`: train a head on a frozen tokenizer's codes (train split),
evaluate it on the test split, write eval/<task>/.../metrics.json. The same for every task: what
differs per task is its `DownstreamTask` (lgvq.downstream.registry, one file per task).

Inputs are the code files `lgvq tokenizer encode` wrote (codes/<split>.npy with their image ids,
and codebook.npy) and the dataset's annotations; the tokenizer itself is never loaded, so a
head sees exactly what the codes carry. The head trains in the one training loop (exact resume,
log.csv, progress bar) under downstream/<task>/<tok>/<variant>/seed<s>/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from lgvq.io import atomic_write_json
from lgvq.manifest import RunRecord, config_hash
from lgvq.metrics.record import MetricRecord
from lgvq.pipeline import jobs, paths
from lgvq.pipeline.artifacts import CodeTable
from lgvq.pipeline.common import dataset_source, process_group


def validation(loss_terms, model, val_batches, n_items: int):
    """The loop's `validate`: each loss term's mean over fixed val batches (built once, on first use)."""
    if val_batches is None:
        return None
    cached: list = []

    def validate() -> dict[str, float]:
        if not cached:
            cached.extend(val_batches(n_items))
        sums: dict[str, float] = {}
        for b in cached:
            for k, v in loss_terms(model, b).items():
                sums[k] = sums.get(k, 0.0) + float(v)
        return {k: v / max(1, len(cached)) for k, v in sums.items()}

    return validate


def convergence_extra(run_dir: Path) -> dict:
    """metrics.json's `convergence` field: the verdict on the run's log.csv (lgvq.train.convergence)."""
    from lgvq.train.convergence import convergence, read_log
    from lgvq.train.loop import LOG_NAME

    verdict = convergence(read_log(run_dir / LOG_NAME))
    return {"convergence": verdict} if verdict is not None else {}


def run(cfg: dict[str, Any], task: str, dataset: str, tokenizer: str, variant: str, seed: int) -> Path:
    from lgvq.downstream.frontend import CodeFrontEnd
    from lgvq.downstream.registry import HEADS, HeadContext
    from lgvq.downstream.task import HeadTask
    from lgvq.settings import dataset_settings, downstream_settings, tokenizer_settings
    from lgvq.train.loop import seed_everything, shuffled_batches, train_loop

    head = HEADS.get(task, key="--task")
    R, d = cfg["results_dir"], downstream_settings(cfg, task)
    h = config_hash(jobs.downstream_training(cfg, task, dataset, tokenizer, variant, seed))  # the checkpoint's
    work = paths.downstream_dir(R, task, dataset, tokenizer, variant, seed)
    out = paths.eval_dir(R, task, dataset, tokenizer, variant, seed)
    record = RunRecord(f"downstream/{task}", jobs.downstream_job(cfg, task, dataset, tokenizer, variant, seed),
                       seed=seed, training_hash=h)
    tokdir = paths.tokenizer_dir(R, dataset, tokenizer, variant, seed)
    train_codes, test_codes = CodeTable(tokdir, ("train",)), CodeTable(tokdir, ("test", "train", "val"))
    codebook = torch.as_tensor(np.load(paths.codebook_file(R, dataset, tokenizer, variant, seed), allow_pickle=False))
    dist, dev = process_group(cfg)  # one process unless torchrun started several (downstream.gpus > 1)
    seed_everything(seed)
    frontend = CodeFrontEnd(codebook, train_codes.grid, head.prefix_width(d) or d.width,
                            normalize=d.codebook_norm == "standardize", conv_layers=d.frontend_conv)
    setup = head.setup(HeadContext(d, dataset_settings(cfg, dataset), dataset_source(cfg, dataset), frontend,
                                   train_codes, test_codes, dev, seed))
    model = setup.model.to(dev)
    if dist.is_main:
        atomic_write_json(work / "vocab.json", setup.vocab)
    trainer = HeadTask(model, setup.loss_terms, lr=d.lr, dist=dist, fast_path=d.fast_path,
                       cpu_bf16=d.cpu_bf16)
    state = train_loop(trainer,
                       shuffled_batches(setup.n_train, d.batch_size, seed, setup.make_batch, dist=dist,
                                        key="downstream.batch_size"),
                       out_dir=work, max_steps=d.steps, seed=seed, config_hash=h, ckpt_every=d.ckpt_every,
                       log_every=max(1, min(10, d.steps)), desc=f"{task}/{tokenizer}/{variant}/seed{seed}", dist=dist,
                       validate=validation(setup.loss_terms, model, setup.val_batches, d.val_items),
                       val_every=d.val_every, val_max_points=d.val_max_points)
    if not dist.is_main:
        return out / paths.METRICS_NAME  # rank 0 evaluates and writes
    model.eval()
    ev = setup.evaluate(model)
    atomic_write_json(out / "predictions.json", ev.predictions)
    MetricRecord(
        task, dataset, tokenizer, variant, seed, ev.metrics, ev.notes,
        labels={"head": f"{type(model).__name__}: width {d.width}, {d.layers} layers, {d.heads} heads, "
                        + (f"{d.frontend_conv} 3x3 conv layers over the code grid, " if d.frontend_conv else "") +
                        f"trained from scratch for {d.steps} steps (batch {d.batch_size}) on the train split's codes",
                "tokenizer_class": tokenizer_settings(cfg, tokenizer).class_,
                **({"decoder": setup.vocab["decoder"]} if "decoder" in setup.vocab else {})},
        extra={**ev.extra, **convergence_extra(work)}).write(out)
    record.write(out, head_dir=str(work), processes=dist.world, execution=trainer.execution.record(),
                 training=state.record())
    return out / paths.METRICS_NAME
