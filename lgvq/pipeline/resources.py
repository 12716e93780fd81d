"""What each rule asks a cluster (or a local `--resources gpu=N`) for: memory, wall time, CPUs, GPUs.

One small model, shared by the Snakefile's rules and `lgvq plan estimate`, instead of constants
pinned in the rules and the SLURM profile. Per rule:

- gpus: the training rules with a `gpus` key take their stage's (`train`, `stage2`, `downstream`):
  torchrun starts that many processes, one per GPU the job gets. The other rules that run a model
  (label-map VQ, encoding, evaluations, text cache, FID extractor) take one GPU; the bookkeeping rules
  none. A CPU cluster overrides `gpu: 0` in its profile (profiles/slurm-local).
- mem_mb: host memory, `base + per_item x batch x (image_size / 256)^2`, times the processes of a
  data-parallel job (each rank is a full process), plus what the rule holds for the whole dataset
  (encoded codes: 8 bytes per code). `base` is the framework (torch, CUDA libraries); `per_item` at
  256 px carries the model, its optimiser and the batch in flight, so a CPU-sized config (16-32 px)
  asks for little more than `base`.
- runtime (minutes): `start-up + items x seconds per item at 256 px x (image_size / 256)^2 x 1.5`, at
  least `MIN_RUNTIME`. Items: steps x batch for training (per process: ranks run in parallel; for a head, and for
  a baseline that trains one, its task's `downstream.per_task` entry where it has one), the dataset's images for
  encoding and data preparation, the evaluation images for the evaluations.
  Seconds per item are assumptions for one A100/H100-class GPU (no GPU measurement exists in this
  project); the 1.5 is the margin. A job that outlives its time limit is not lost: the profile asks
  for SIGTERM before the limit, training checkpoints and exits, and `retries` resumes it.
- cpus_per_task: `CPUS_PER_PROCESS` per process for the rules that load images, 1 for the others.

Dataset size: a generated dataset's `synth.n`; a real one the published image count of its source
(`NOMINAL_IMAGES`), else `DEFAULT_IMAGES`. Every value is overridable per rule in the config:
`resources: {train_tokenizer: {runtime: 2880, mem_mb: 32000}}` (config/schema.yaml).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lgvq.config import ConfigError
from lgvq.data.registry import GENERATED_SOURCES
from lgvq.sections import task_section

MIN_RUNTIME = 30     # minutes: below this a queue's scheduling granularity dominates
MARGIN = 1.5
CPUS_PER_PROCESS = 4  # decoding and resizing images beside each GPU
CAPTIONS_PER_IMAGE = 10  # the text cache encodes every caption (CUB: 10, COCO: 5, TextCaps: 5)
NOMINAL_IMAGES = {"mmceleba": 30_000, "cub": 11_788, "coco": 123_287, "textcaps": 28_408}
DEFAULT_IMAGES = 100_000
KEYS = ("mem_mb", "runtime", "cpus_per_task", "gpus")


@dataclass(frozen=True)
class Model:
    """One rule's resource model: memory in MB, seconds per item at 256 px on one GPU."""

    base_mb: int
    per_item_mb: float = 0.0   # per item of a batch, at 256 px
    startup_min: float = 2.0
    sec_per_item: float = 0.0
    items: str = "none"        # what it iterates: train | stage2 | downstream | labelmap | images | eval | captions | extractor
    gpu: str = "none"          # none | one | train | stage2 | downstream (the stage whose `gpus` it takes)
    loads_images: bool = False


RULES: dict[str, Model] = {
    "prepare_data": Model(2000, startup_min=1, sec_per_item=0.005, items="images"),
    "dataset_stats": Model(1000, startup_min=1, sec_per_item=0.002, items="images"),
    "text_cache": Model(3000, per_item_mb=20, sec_per_item=0.002, items="captions", gpu="one"),
    "train_feature_extractor": Model(2000, per_item_mb=50, sec_per_item=0.002, items="extractor", gpu="one",
                                     loads_images=True),
    "train_tokenizer": Model(2000, per_item_mb=600, sec_per_item=0.04, items="train", gpu="train", loads_images=True),
    "encode_codes": Model(2000, per_item_mb=100, sec_per_item=0.005, items="images", gpu="one", loads_images=True),
    "eval_reconstruction": Model(2000, per_item_mb=150, sec_per_item=0.02, items="eval", gpu="one", loads_images=True),
    "eval_text_alignment": Model(2000, per_item_mb=100, sec_per_item=0.01, items="eval", gpu="one"),
    "labelmap_vq": Model(2000, per_item_mb=100, sec_per_item=0.002, items="labelmap", gpu="one"),
    "stage2": Model(2000, per_item_mb=300, sec_per_item=0.02, items="stage2", gpu="stage2", loads_images=True),
    "downstream": Model(2000, per_item_mb=50, sec_per_item=0.005, items="downstream", gpu="downstream"),
    # every baseline/ceiling rule (lgvq.pipeline.references): a few evaluation images, decoded or scored once
    "reference": Model(2000, per_item_mb=150, sec_per_item=0.02, items="eval", gpu="one", loads_images=True),
    # a baseline that trains a head (the blind and text-only heads): the steps of the task it controls for, one process
    "reference_head": Model(2000, per_item_mb=50, sec_per_item=0.005, items="downstream", gpu="one"),
    "tables": Model(1500, startup_min=5),
    "table": Model(1500, startup_min=5),
    "report": Model(1500, startup_min=5),
}


def dataset_images(cfg: dict[str, Any], dataset: str) -> int:
    ds = cfg["datasets"][dataset]
    if ds.get("root") is None and ds["source"] in GENERATED_SOURCES:
        return int(ds.get("synth", {}).get("n", 1000))
    return NOMINAL_IMAGES.get(ds["source"], DEFAULT_IMAGES)


def _section(cfg: dict[str, Any], items: str, task: str | None) -> dict[str, Any] | None:
    """The training section a rule iterates, as `task`'s models see it (its `per_task` entry applied)."""
    section = {"train": "train", "stage2": "stage2", "labelmap": "stage2", "downstream": "downstream"}.get(items)
    return task_section(cfg, section, task) if section else None


def _processes(cfg: dict[str, Any], m: Model) -> int:
    return int(cfg[m.gpu]["gpus"]) if m.gpu in ("train", "stage2", "downstream") else 1


def _count(cfg: dict[str, Any], m: Model, dataset: str | None, section: dict[str, Any] | None) -> int:
    """Items one job processes: steps x batch for a training rule (`section`: its section, see `_section`)."""
    if section is not None:
        return int(section["steps"]) * int(section["batch_size"])
    if dataset is None or m.items == "none":
        return 0
    n = dataset_images(cfg, dataset)
    if m.items == "extractor":  # drawn images when asked for, else the dataset's (the train split, at most)
        return (int(cfg["eval"]["shapes_cnn_images"]) or n) * int(cfg["eval"]["shapes_cnn_epochs"])
    return {"images": n, "eval": min(n, int(cfg["datasets"][dataset]["eval_images"])),
            "captions": n * CAPTIONS_PER_IMAGE}[m.items]


def model_resources(cfg: dict[str, Any], rule: str, dataset: str | None = None,
                    task: str | None = None) -> dict[str, int]:
    """The model's values for one job of `rule` on `dataset`, of `task` where the rule's jobs are per task
    (a `downstream.per_task` entry changes that task's steps and batch; no config overrides)."""
    if rule not in RULES:
        raise ConfigError(f"resources: no resource model for rule '{rule}' (rules: {', '.join(RULES)})")
    m = RULES[rule]
    scale = 1.0
    if dataset is not None:
        scale = (int(cfg["datasets"][dataset]["image_size"]) / 256) ** 2
    procs = _processes(cfg, m)
    section = _section(cfg, m.items, task)
    batch = int(section["batch_size"]) if section else 32
    mem = procs * (m.base_mb + m.per_item_mb * batch * scale)
    if rule == "encode_codes" and dataset is not None:
        side = int(cfg["datasets"][dataset]["image_size"]) // 16  # the paper's 16x downsampling; smaller grids cost less
        mem += dataset_images(cfg, dataset) * side * side * 8 / 2**20
    seconds = _count(cfg, m, dataset, section) * m.sec_per_item * scale * MARGIN
    runtime = max(MIN_RUNTIME, m.startup_min + seconds / 60)
    gpus = {"none": 0, "one": 1}.get(m.gpu, procs)
    cpus = CPUS_PER_PROCESS * procs if m.loads_images else 1
    return {"mem_mb": int(math.ceil(mem / 100) * 100), "runtime": int(math.ceil(runtime)), "cpus_per_task": cpus,
            "gpus": gpus}


def rule_resources(cfg: dict[str, Any], rule: str, dataset: str | None = None,
                   task: str | None = None) -> dict[str, int]:
    """mem_mb, runtime (minutes), cpus_per_task and gpus of one job: the model, then the config's
    `resources.<rule>` overrides. A data-parallel rule's `gpus` override must be 0 (CPU processes)
    or its stage's `gpus`: torchrun starts that many processes and each must get its own GPU."""
    out = model_resources(cfg, rule, dataset, task)
    override = (cfg.get("resources") or {}).get(rule) or {}
    m = RULES[rule]
    if "gpus" in override and m.gpu in ("train", "stage2", "downstream"):
        want = int(cfg[m.gpu]["gpus"])
        if override["gpus"] not in (0, want):
            raise ConfigError(f"resources.{rule}.gpus: {override['gpus']}, but {m.gpu}.gpus is {want} (torchrun "
                              f"starts {want} processes, one per GPU); set {m.gpu}.gpus instead, or 0 for the CPU")
    out.update({k: int(v) for k, v in override.items() if k in KEYS})
    return out


def job_memory_mb(cfg: dict[str, Any], rule: str, dataset: str, task: str | None = None) -> int | None:
    """The memory one job of `rule` (of `task`, for a per-task rule) asks for (`lgvq plan estimate`'s memory
    column); None for a rule without a model."""
    return rule_resources(cfg, rule, dataset, task)["mem_mb"] if rule in RULES else None


def resource_table(cfg: dict[str, Any], dataset: str) -> str:
    """A Markdown table of every rule's resources for one dataset of `cfg` (README's table)."""
    rows = ["| rule | GPUs | CPUs | memory (GB) | time limit (h) |", "|---|---:|---:|---:|---:|"]
    for rule in RULES:
        r = rule_resources(cfg, rule, dataset)
        rows.append(f"| {rule} | {r['gpus']} | {r['cpus_per_task']} | {r['mem_mb'] / 1000:.1f} "
                    f"| {r['runtime'] / 60:.1f} |")
    return "\n".join(rows)
