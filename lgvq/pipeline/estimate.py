"""Device-hours a config will cost, before any of it runs (`lgvq plan estimate`).

The job list is the DAG's own (lgvq.pipeline.plan). FLOPs per job:
- tokenizer training: steps x batch x the FLOPs of one training step of one image, as counted by
  torch.utils.flop_counter in benchmarks/bench_tokenizers.py (its `paper` rows: batch 1 at the
  paper size, generator + discriminator step; the LG module is not in that count);
- second stage and understanding heads: no measurement at their paper size exists here, so the
  standard transformer estimate 6 x parameters x tokens per step (forward + backward), with
  parameters = 12 x layers x width^2 and tokens = batch x (code grid + condition/words).
Device-hours = FLOPs / (peak FLOP/s x MFU); both are arguments, and the defaults (an H100's dense
bf16 peak, MFU 0.3) are assumptions, printed with every estimate. No GPU was available to this
project to measure MFU; replace the assumption with a measured one when a GPU run exists.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lgvq.io import ArtifactError
from lgvq.pipeline import plan
from lgvq.tokenizers import PRETRAINED

DEFAULT_BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "tokenizers_cpu.json"
H100_BF16_PEAK = 989e12


@dataclass(frozen=True)
class JobEstimate:
    kind: str  # "tokenizer <class>", "stage2 <task>", "downstream <task>"
    jobs: int
    steps: int
    flops_per_job: float
    basis: str

    def hours(self, peak_flops: float, mfu: float) -> float:
        return self.jobs * self.flops_per_job / (peak_flops * mfu) / 3600


def _measured_step_flops(benchmark: Path) -> dict[tuple[str, int], float]:
    """(tokenizer class, image size) -> FLOPs of one training step per image."""
    if not benchmark.is_file():
        raise ArtifactError(f"tokenizer benchmark not found: {benchmark} (run benchmarks/bench_tokenizers.py)")
    try:
        rows = json.loads(benchmark.read_text())["results"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ArtifactError(f"{benchmark}: not a bench_tokenizers.py result ({e})") from e
    out: dict[tuple[str, int], float] = {}
    for r in rows:
        if r.get("flops_per_step"):
            out[(r["class"], int(r["image_size"]))] = float(r["flops_per_step"]) / int(r["batch"])
    return out


def _transformer_flops(width: int, layers: int, tokens_per_step: int) -> float:
    return 6.0 * 12 * layers * width**2 * tokens_per_step


def estimate(cfg: dict[str, Any], benchmark: Path = DEFAULT_BENCHMARK) -> list[JobEstimate]:
    measured = _measured_step_flops(benchmark)
    rows: list[JobEstimate] = []
    train = cfg["train"]
    # jobs grouped by (class, image size, steps): an entry may train for its own `steps` (a fine-tuning)
    by_class: dict[tuple[str, int, int], int] = defaultdict(int)
    entry_of: dict[tuple[str, int, int], str] = {}
    for run in plan.tokenizer_runs(cfg):
        entry = cfg["tokenizers"][run.tokenizer]
        if entry.get("checkpoint"):
            continue  # a frozen checkpoint trains nothing
        group = (entry["class"], cfg["datasets"][run.dataset]["image_size"], entry.get("steps") or train["steps"])
        by_class[group] += 1
        entry_of.setdefault(group, run.tokenizer)
    for (cls, size, steps), n in sorted(by_class.items()):
        per_image = measured.get((cls, size))
        how = f"measured: {(per_image or 0) / 1e9:.0f} GFLOP per image-step (flop_counter, LG module not counted)"
        if per_image is None and cls in PRETRAINED:  # fine-tuned published models: not in the benchmark
            per_image = _counted_step_flops(cfg["tokenizers"][entry_of[(cls, size, steps)]], size)
            how = f"counted: {per_image / 1e9:.0f} GFLOP per image-step (flop_counter on meta tensors; perceptual, GAN, LG not counted)"
        if per_image is None:
            raise ArtifactError(f"{benchmark} has no FLOP count for tokenizer class '{cls}' at {size} px; "
                                "run benchmarks/bench_tokenizers.py with a profile of that size")
        world = train["gpus"]
        rows.append(JobEstimate(f"tokenizer {cls} ({size} px)", n, steps,
                                steps * train["batch_size"] * world * per_image, how))
    for stage, tasks in (("stage2", plan.STAGE2_TABLE_TASK.values()), ("downstream", cfg["downstream"]["tasks"])):
        s = cfg[stage]
        for task in dict.fromkeys(t for group in tasks for t in ((group,) if isinstance(group, str) else group)):
            runs = plan.task_runs(cfg, stage, task)
            if not runs:
                continue
            size = cfg["datasets"][runs[0].dataset]["image_size"]
            grid = _grid(cfg, runs[0].tokenizer, size)
            # condition tokens beside the code grid: text for text-to-image, words for the heads,
            # the label map's own codes for semantic synthesis, none for the unconditional tasks
            extra = {"t2i_ar": cfg["text_encoder"]["max_length"], "t2i_diffusion": cfg["text_encoder"]["max_length"],
                     "semantic": grid}.get(task, s.get("max_words", 0) if stage == "downstream" else 0)
            layers = (s.get("diffusion_layers") or s["layers"]) if task == "t2i_diffusion" else s["layers"]
            tokens = s["batch_size"] * s["gpus"] * (grid + extra)
            rows.append(JobEstimate(f"{stage} {task}", len(runs), s["steps"],
                                    s["steps"] * _transformer_flops(s["width"], layers, tokens),
                                    f"6 x params x tokens: width {s['width']}, {layers} layers, {grid}+{extra} tokens"))
    return rows


def _counted_step_flops(entry: dict[str, Any], image_size: int) -> float:
    """FLOPs of one fine-tuning step of one image, counted on meta tensors (shapes only: no
    weights, no compute), the way bench_tokenizers.py counts a real step."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from lgvq.tokenizers.registry import build_tokenizer

    params = {k: v for k, v in entry["params"].items() if k != "perceptual_weights"}
    with torch.device("meta"):
        model = build_tokenizer(entry["class"], params, image_size=image_size)
        x = torch.zeros(1, 3, image_size, image_size)
    with FlopCounterMode(display=False) as counter:
        out = model(x)
        sum(model.generator_losses(x, out, 0).values()).backward()
    return float(counter.get_total_flops())


def _grid(cfg: dict[str, Any], tokenizer: str, image_size: int) -> int:
    ch_mult = cfg["tokenizers"][tokenizer]["params"].get("ch_mult", (1, 1, 2, 2, 4))
    side = image_size // 2 ** (len(ch_mult) - 1)
    return side * side


def render(rows: list[JobEstimate], *, peak_flops: float, mfu: float, source: str) -> str:
    lines = [f"Estimated device-hours for {source}",
             f"assumption: peak {peak_flops / 1e12:.0f} TFLOP/s x MFU {mfu} (no GPU measurement exists here)", "",
             f"{'job kind':38s} {'jobs':>5s} {'steps':>7s} {'PFLOP/job':>10s} {'h/job':>7s} {'hours':>8s}  basis"]
    total = 0.0
    for r in rows:
        h = r.hours(peak_flops, mfu)
        total += h
        lines.append(f"{r.kind:38s} {r.jobs:5d} {r.steps:7d} {r.flops_per_job / 1e15:10.1f} "
                     f"{h / max(r.jobs, 1):7.2f} {h:8.1f}  {r.basis}")
    lines += ["", f"total: {total:.1f} device-hours (evaluation jobs not counted)"]
    return "\n".join(lines)
