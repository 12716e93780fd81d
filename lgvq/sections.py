"""A second-stage or downstream section as one model's job reads it: the task's own `per_task` entry applied
(`downstream.per_task.vqa.steps`: config/schema.yaml lists the keys a task may set), and which of the section's
keys enter the job hash (`head_settings`, read by lgvq.pipeline.jobs). This module imports no torch."""

from __future__ import annotations

from typing import Any

from lgvq.config import VALIDATION_KEYS, hash_neutral

__all__ = ["task_section", "head_settings", "SAMPLING_ONLY_KEYS", "LABELMAP_ONLY_KEYS"]

# Keys of `stage2` / `downstream` that choose which jobs run, not what one job computes; and
# `ckpt_every`, how often a checkpoint is written (resume is exact at any cadence, as for `train`).
_RUN_SELECTION_KEYS = ("enabled", "tasks", "tokenizers", "ckpt_every")
# Keys read only when sampling from a finished checkpoint: in the sampling job's hash (lgvq.pipeline.jobs.stage2_job),
# not the checkpoint's, so changing them re-samples without retraining.
SAMPLING_ONLY_KEYS = ("guidance_scale", "samples_per_caption", "truncation_rate", "diffusion_sampler")
# Keys of `stage2` read only by the label-map VQ's job (lgvq.pipeline.jobs.labelmap_vq): a generator's checkpoint
# does not hold them; the semantic jobs, which read the label-map VQ, rerun when its model.pt is rewritten.
LABELMAP_ONLY_KEYS = ("labelmap_ch",)


def task_section(cfg: dict[str, Any], stage: str, task: str | None) -> dict[str, Any]:
    """A stage's section as one task's models see it: the section's keys, with the task's entry of its
    `per_task` map (when the section has one) in place of the shared values; `per_task` itself dropped.
    `task=None`: the shared values."""
    section = cfg[stage]
    own = (section.get("per_task") or {}).get(task, {}) if task is not None else {}
    return {**{k: v for k, v in section.items() if k != "per_task"}, **own}


def head_settings(cfg: dict[str, Any], stage: str, *, task: str | None = None,
                  data_parallel: bool = True) -> dict[str, Any]:
    """The settings of one second-stage or downstream model of `task` (its section with the task's
    `per_task` entry applied, minus the keys that only select which jobs run): narrowing `tasks` or
    `tokenizers` must not invalidate finished jobs, nor may one task's `per_task` entry reach another task's.
    `gpus` counts when above 1 for a data-parallel job (it multiplies the global batch), never
    for a single-process one (`data_parallel=False`, the label-map VQ)."""
    return {k: v for k, v in task_section(cfg, stage, task).items()
            if k not in (*_RUN_SELECTION_KEYS, *VALIDATION_KEYS, *SAMPLING_ONLY_KEYS, *LABELMAP_ONLY_KEYS)
            and not (k == "gpus" and (v == 1 or not data_parallel))
            and not hash_neutral(k, v)}
