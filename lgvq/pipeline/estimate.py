"""Device-hours a config will cost, before any of it runs (`lgvq plan estimate`).

The job list is the DAG's own (lgvq.pipeline.plan). A job's time is its compute, FLOPs / (peak FLOP/s x MFU),
combined with the time its process spends decoding the images it reads (the input pipeline).

FLOPs per job (the cost model; every assumption below is printed as a row's basis):
- tokenizer training: steps x batch x the FLOPs of one training step of one image, as counted by
  torch.utils.flop_counter in benchmarks/bench_tokenizers.py (its `paper` rows: batch 1 at the
  paper size, generator + discriminator step; the LG module is not in that count);
- tokenizer inference (encode, evaluations, decoding samples): a training step is taken as ~3 forward
  passes (backward ~ 2 x forward, the discriminator folded in), encoder and decoder as equal halves, so one
  image costs step/6 to encode and step/3 to encode and decode (FORWARD_SHARE, ENCODER_SHARE);
- `encode_codes`: every image of train, val and test encoded (val and test counted apart: each gets its file);
- `eval_reconstruction`: the first `eval_images` test images encoded and decoded and their FID features (the
  codebook statistics read the test codes; the reference's features are cached once per dataset);
- `eval_text_alignment`: train and test encoded; each test image's caption re-encoded by the text encoder for
  Mask-1 and Mask-3 (the leak-free protocol);
- `text_cache`: every caption of the dataset through the text encoder, 2 x parameters x max_length each;
- second stage and understanding heads, training: no measurement at their paper size exists here, so the
  standard transformer estimate 6 x parameters x tokens per step (forward + backward), with
  parameters = 12 x layers x width^2 and tokens = batch x (code grid + condition/words);
- second-stage sampling: `eval_images` samples per job. CodeGPT samples with its key/value cache, so a sample
  costs one forward per token: 2 x parameters x (condition + grid); the discrete diffusion runs
  `diffusion_steps` full forwards of (grid + text) tokens. Each sample is decoded (step/6) and its FID features
  taken; the attention's own FLOPs are left out (small next to the weights at these lengths). Sampling reads
  codes and cached features, not images; it is a row of its own beside the stage-2 training row;
FID features: Inception-v3 at 299 px is ~11.5 GFLOP an image (INCEPTION_FLOPS); shapes-cnn and `none` count 0.

Input: the images a job decodes, divided by the input pipeline's images/s per process. That rate is
measured when benchmarks/results/input_pipeline_cpu.json (benchmarks/bench_input.py) is present: its fastest
row at the dataset's image size, overlapped with compute when it used loader workers. Without it the
constant INPUT_IMAGES_PER_S (the issue's measurement: ~28 ms a 1024^2 JPEG decoded and resized with PIL on
the training thread) is used, added to compute (no overlap). Both are labelled in the output. A job of
several processes (train.gpus) waits on each of its devices, so its input device-hours count every
process. The embedded data (tiny PNGs) is not counted. A row's `memory_mb` is a hook: `estimate(memory=...)`
fills it; `lgvq plan estimate` passes lgvq.pipeline.resources.job_memory_mb (the per-rule model SLURM jobs ask by).

Device-hours use the peak and MFU given as arguments, and the defaults (an H100's dense bf16 peak, MFU 0.3)
are assumptions, printed with every estimate. No GPU was available to this project to measure MFU.
Not counted: data preparation, dataset statistics, the shapes-cnn extractor's and the label-map VQ's
training, the understanding heads' test-time decoding, tables, the report.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from lgvq.io import ArtifactError
from lgvq.pipeline import plan
from lgvq.sections import task_section
from lgvq.settings import stage2_settings, text_encoder_settings
from lgvq.stage2.registry import STAGE2_TASKS
from lgvq.tokenizers import PRETRAINED

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
DEFAULT_BENCHMARK = BENCHMARKS / "tokenizers_cpu.json"
DEFAULT_INPUT_BENCHMARK = BENCHMARKS / "input_pipeline_cpu.json"
H100_BF16_PEAK = 989e12
INPUT_IMAGES_PER_S = 1 / 0.028  # one 1024^2 JPEG in ~28 ms on the training thread (issue 20's measurement)
FORWARD_SHARE, ENCODER_SHARE = 1 / 3, 1 / 2
INCEPTION_FLOPS = 11.5e9
TEXT_ENCODER_PARAMS = {"minilm": 22.7e6, "clip": 63.2e6}  # all-MiniLM-L6-v2; CLIP ViT-B/32's text tower
# Official split sizes (images) of the built-in real sources: (train, held-out), the held-out split serving
# as val and test (docs/real_datasets.md), and captions per image. The embedded data's come from `synth`.
SPLIT_IMAGES = {"cub": (5994, 5794, 10), "mmceleba": (24000, 6000, 10), "textcaps": (21953, 3166, 5),
                "coco": (82783, 40504, 5)}
MemoryModel = Callable[[dict[str, Any], str, str, "str | None"], "int | None"]  # (cfg, rule, dataset, task) -> mem_mb


@dataclass(frozen=True)
class InputThroughput:
    images_per_s: float  # per process
    overlapped: bool  # decoded by loader workers while the device computes (else on the training thread)
    basis: str


@dataclass(frozen=True)
class JobEstimate:
    kind: str  # "tokenizer <class>", "stage2 <task>", "downstream <task>", "encode", ...
    jobs: int
    steps: int
    flops_per_job: float
    basis: str
    rule: str = ""  # the Snakemake rule (what a per-rule resource model is asked about)
    datasets: tuple[str, ...] = ()
    images_per_job: int = 0  # images one process decodes
    input: InputThroughput | None = None
    processes: int = 1  # per job (torchrun ranks, one device each): every one waits for its own images
    memory_mb: int | None = None  # the hook: filled by `estimate(memory=...)`, else left empty
    task: str | None = None  # a per-task rule's task (its `downstream.per_task` batch prices its memory)

    def compute_hours(self, peak_flops: float, mfu: float) -> float:
        return self.jobs * self.flops_per_job / (peak_flops * mfu) / 3600

    def input_hours(self) -> float:
        """Device-hours spent decoding: every process of every job waits for its own images."""
        if self.input is None:
            return 0.0
        return self.jobs * self.processes * self.images_per_job / self.input.images_per_s / 3600

    def hours(self, peak_flops: float, mfu: float) -> float:
        compute, inp = self.compute_hours(peak_flops, mfu), self.input_hours()
        return max(compute, inp) if self.input is not None and self.input.overlapped else compute + inp


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


def input_throughput(benchmark: Path | None, image_size: int) -> InputThroughput:
    """The input pipeline's images/s at `image_size`: the benchmark's fastest row when the file exists
    (rows: `images_per_s`, optional `image_size` and `workers`), else the documented constant."""
    if benchmark is None or not benchmark.is_file():
        return InputThroughput(INPUT_IMAGES_PER_S, False, f"assumed: {INPUT_IMAGES_PER_S:.0f} images/s per process "
                               "(~28 ms a 1024^2 JPEG on the training thread), added to compute")
    try:
        data = json.loads(benchmark.read_text())
        rows = data.get("rows", data.get("results")) if isinstance(data, dict) else data
        rows = [r for r in rows if float(r["images_per_s"]) > 0]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise ArtifactError(f"{benchmark}: not an input-pipeline benchmark (rows with images_per_s): {e}") from e
    sized = [r for r in rows if int(r.get("image_size", image_size)) == image_size]
    if not sized:
        raise ArtifactError(f"{benchmark} has no input-pipeline row at {image_size} px (rows: "
                            f"{sorted({r.get('image_size') for r in rows}, key=str)})")
    best = max(sized, key=lambda r: float(r["images_per_s"]))
    workers = int(best.get("workers", 0) or 0)
    how = "overlapped with compute" if workers else "added to compute"
    return InputThroughput(float(best["images_per_s"]), workers > 0,
                           f"measured: {float(best['images_per_s']):.0f} images/s per process at {image_size} px, "
                           f"{workers} loader workers ({benchmark.name}), {how}")


def split_images(cfg: dict[str, Any], dataset: str) -> dict[str, int] | None:
    """Images per split (train / val / test) and captions per image ("captions"); None when not known."""
    from lgvq.data.synth import SPLITS
    from lgvq.data.registry import GENERATED_SOURCES

    ds = cfg["datasets"][dataset]
    if ds["source"] in GENERATED_SOURCES:
        n = ds["synth"]["n"]
        train, val = int(n * SPLITS["train"]), int(n * SPLITS["val"])
        return {"train": train, "val": val, "test": n - train - val, "unique": n, "captions": 5}
    if ds["source"] not in SPLIT_IMAGES:
        return None
    train, held, caps = SPLIT_IMAGES[ds["source"]]
    return {"train": train, "val": held, "test": held, "unique": train + held, "captions": caps}


def _transformer_flops(width: int, layers: int, tokens_per_step: int) -> float:
    return 6.0 * 12 * layers * width**2 * tokens_per_step


def _grid(cfg: dict[str, Any], tokenizer: str, image_size: int) -> int:
    ch_mult = cfg["tokenizers"][tokenizer]["params"].get("ch_mult", (1, 1, 2, 2, 4))
    side = image_size // 2 ** (len(ch_mult) - 1)
    return side * side


def _fid_flops(cfg: dict[str, Any]) -> float:
    return INCEPTION_FLOPS if cfg["eval"]["fid_extractor"] == "inception" else 0.0


@lru_cache(maxsize=None)
def _counted_step_flops_cached(cls: str, params_key: str, image_size: int) -> float:
    """FLOPs of one fine-tuning step of one image, counted on meta tensors (shapes only: no
    weights, no compute), the way bench_tokenizers.py counts a real step."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from lgvq.tokenizers.registry import build_tokenizer

    params = {k: v for k, v in json.loads(params_key).items() if k != "perceptual_weights"}
    with torch.device("meta"):
        model = build_tokenizer(cls, params, image_size=image_size)
        x = torch.zeros(1, 3, image_size, image_size)
    with FlopCounterMode(display=False) as counter:
        out = model(x)
        sum(model.generator_losses(x, out, 0).values()).backward()
    return float(counter.get_total_flops())


def _counted_step_flops(params: dict[str, Any], cls: str, image_size: int) -> float:
    return _counted_step_flops_cached(cls, json.dumps(params, sort_keys=True, default=str), image_size)


def _step_flops(cfg: dict[str, Any], measured: dict[tuple[str, int], float], benchmark: Path, run: plan.Run) -> float:
    cls, size = cfg["tokenizers"][run.tokenizer]["class"], cfg["datasets"][run.dataset]["image_size"]
    per_image = measured.get((cls, size))
    if per_image is None and cls in PRETRAINED:  # fine-tuned/frozen published models: not in the benchmark
        per_image = _counted_step_flops(cfg["tokenizers"][run.tokenizer]["params"], cls, size)
    if per_image is None:
        raise ArtifactError(f"{benchmark} has no FLOP count for tokenizer class '{cls}' at {size} px; "
                            "run benchmarks/bench_tokenizers.py with a profile of that size")
    return per_image


def estimate(cfg: dict[str, Any], benchmark: Path = DEFAULT_BENCHMARK,
             input_benchmark: Path | None = DEFAULT_INPUT_BENCHMARK, memory: MemoryModel | None = None
             ) -> list[JobEstimate]:
    """One row per job kind of the DAG. `input_benchmark=None` uses the documented input constant;
    `memory(cfg, rule, dataset, task) -> mem_mb` fills each row's memory column (the largest over its datasets)."""
    measured = _measured_step_flops(benchmark)
    rows = _tokenizer_rows(cfg, measured, benchmark, input_benchmark)
    rows += _inference_rows(cfg, measured, benchmark, input_benchmark)
    rows += _head_rows(cfg)
    if memory is None:
        return rows
    out = []
    for r in rows:
        mems = [m for m in (memory(cfg, r.rule, ds, r.task) for ds in r.datasets) if m is not None]
        out.append(JobEstimate(**{**r.__dict__, "memory_mb": max(mems) if mems else None}))
    return out


def _input(cfg: dict[str, Any], dataset: str, input_benchmark: Path | None) -> InputThroughput | None:
    from lgvq.data.registry import GENERATED_SOURCES

    if cfg["datasets"][dataset]["source"] in GENERATED_SOURCES:
        return None  # the embedded data's tiny PNGs: their decoding is not what a run waits on
    return input_throughput(input_benchmark, cfg["datasets"][dataset]["image_size"])


def _tokenizer_rows(cfg, measured, benchmark, input_benchmark) -> list[JobEstimate]:
    train = cfg["train"]
    from lgvq.data.registry import GENERATED_SOURCES

    # grouped by class and image size (the FLOPs), and by real vs embedded data (whether input is counted)
    # and by steps: an entry may train for its own `steps` (a fine-tuning); a frozen checkpoint trains nothing
    groups: dict[tuple[str, int, bool, int], list[plan.Run]] = defaultdict(list)
    for run in plan.tokenizer_runs(cfg):
        ds, entry = cfg["datasets"][run.dataset], cfg["tokenizers"][run.tokenizer]
        if entry.get("checkpoint"):
            continue
        key = (entry["class"], ds["image_size"], ds["source"] in GENERATED_SOURCES, entry.get("steps") or train["steps"])
        groups[key].append(run)
    rows = []
    for (cls, size, embedded, steps), runs in sorted(groups.items()):
        per_image = _step_flops(cfg, measured, benchmark, runs[0])
        how = ("measured" if (cls, size) in measured else "counted on meta tensors (perceptual, GAN not counted)")
        inp = _input(cfg, runs[0].dataset, input_benchmark)
        rows.append(JobEstimate(
            f"tokenizer {cls} ({size} px{', embedded data' if embedded else ''})", len(runs), steps,
            steps * train["batch_size"] * train["gpus"] * per_image,
            f"{how}: {per_image / 1e9:.0f} GFLOP per image-step (flop_counter, LG module not counted)"
            + (f"; input {inp.basis}" if inp else ""), "train_tokenizer", tuple(dict.fromkeys(r.dataset for r in runs)),
            steps * train["batch_size"], inp, train["gpus"]))
    return rows


def _inference_rows(cfg, measured, benchmark, input_benchmark) -> list[JobEstimate]:
    """encode_codes, eval_reconstruction, eval_text_alignment, text_cache, and stage-2 sampling."""
    te = cfg["text_encoder"]
    text_fwd = 2 * TEXT_ENCODER_PARAMS.get(te["name"], TEXT_ENCODER_PARAMS["clip"]) * te["max_length"]
    sized = "" if te["name"] in TEXT_ENCODER_PARAMS else " (size not known: priced as CLIP's text tower)"
    # one row per job kind and dataset: sizes, image sizes and the input rate are the dataset's
    acc: dict[tuple[str, str], dict[str, Any]] = {}

    def add(kind: str, rule: str, dataset: str, flops: float, images: int, basis: str) -> None:
        row = acc.setdefault((kind, dataset), {"rule": rule, "jobs": 0, "flops": 0.0, "images": 0, "basis": basis,
                                               "input": _input(cfg, dataset, input_benchmark)})
        row["jobs"] += 1
        row["flops"] += flops
        row["images"] += images

    unknown = []
    for ds in cfg["datasets"]:
        n = split_images(cfg, ds)
        if n is None:
            unknown.append(ds)
            continue
        add("text cache", "text_cache", ds, n["unique"] * n["captions"] * text_fwd, 0,
            f"{te['name']} text encoder{sized}, 2 x params x {te['max_length']} tokens per caption")
    for run in plan.tokenizer_runs(cfg):
        n = split_images(cfg, run.dataset)
        if n is None:
            continue
        step = _step_flops(cfg, measured, benchmark, run)
        enc, ae = step * FORWARD_SHARE * ENCODER_SHARE, step * FORWARD_SHARE
        all_images = n["train"] + n["val"] + n["test"]
        add("encode codes", "encode_codes", run.dataset, all_images * enc, all_images,
            "train+val+test encoded, encoder = step/6 (assumed)")
        k = min(cfg["datasets"][run.dataset]["eval_images"], n["test"])
        add("eval reconstruction", "eval_reconstruction", run.dataset, k * (ae + _fid_flops(cfg)), k,
            "eval_images test images encoded+decoded (step/3) + their FID features (the reference's are cached)")
    for run in dict.fromkeys([*plan.main_runs(cfg), *plan.dose_runs(cfg)]):  # the dose-response's runs too
        n = split_images(cfg, run.dataset)
        if n is None:
            continue
        enc = _step_flops(cfg, measured, benchmark, run) * FORWARD_SHARE * ENCODER_SHARE
        add("eval text alignment", "eval_text_alignment", run.dataset,
            (n["train"] + n["test"]) * enc + 2 * n["test"] * text_fwd, n["train"] + n["test"],
            "train+test encoded; test captions re-encoded for Mask-1 and Mask-3 (leak-free)")
    s, text = stage2_settings(cfg), text_encoder_settings(cfg)
    for tasks in plan.stage2_table_tasks().values():
        for t in tasks:
            spec = STAGE2_TASKS.get(t)
            for run in plan.task_runs(cfg, "stage2", t):
                size = cfg["datasets"][run.dataset]["image_size"]
                grid, k = _grid(cfg, run.tokenizer, size), cfg["datasets"][run.dataset]["eval_images"]
                cond = spec.condition_tokens(text, grid)
                params = 12 * spec.layers(s) * s.width ** 2
                passes = spec.sampling_passes(s)
                per_sample = passes * 2 * params * (grid + cond)
                decode = _step_flops(cfg, measured, benchmark, run) * FORWARD_SHARE * (1 - ENCODER_SHARE)
                add(f"stage2 {t} sampling", "stage2", run.dataset, k * (per_sample + decode + _fid_flops(cfg)), 0,
                    (f"{passes} passes x " if passes > 1 else "KV-cached: ")
                    + f"2 x params x {grid}+{cond} tokens per sample; eval_images samples decoded (step/6) + FID")
    rows = [JobEstimate(f"{kind} ({ds})", a["jobs"], 0, a["flops"] / a["jobs"], a["basis"], a["rule"], (ds,),
                        a["images"] // a["jobs"], a["input"]) for (kind, ds), a in acc.items()]
    if unknown:
        rows.append(JobEstimate("not priced: unknown dataset size", 0, 0, 0.0,
                                "no split sizes (SPLIT_IMAGES) for " + ", ".join(
                                    f"datasets.{d} (source '{cfg['datasets'][d]['source']}')" for d in unknown),
                                "", tuple(unknown)))
    return rows


def _head_rows(cfg: dict[str, Any]) -> list[JobEstimate]:
    rows = []
    for stage, tasks in (("stage2", plan.stage2_table_tasks().values()), ("downstream", cfg["downstream"]["tasks"])):
        for task in dict.fromkeys(t for group in tasks for t in ((group,) if isinstance(group, str) else group)):
            s = task_section(cfg, stage, task)  # a downstream task's `per_task` entry: its own steps, width, ...
            runs = plan.task_runs(cfg, stage, task)
            if (stage, task) == ("downstream", "vqa"):  # the dose-response's VQA column trains heads of its own
                runs = list(dict.fromkeys([*runs, *plan.dose_vqa_runs(cfg)]))
            if not runs:
                continue
            size = cfg["datasets"][runs[0].dataset]["image_size"]
            grid = _grid(cfg, runs[0].tokenizer, size)
            # condition tokens beside the code grid: text for text-to-image, words for the heads,
            # the label map's own codes for semantic synthesis, none for the unconditional tasks
            if stage == "stage2":
                spec = STAGE2_TASKS.get(task)
                extra, layers = spec.condition_tokens(text_encoder_settings(cfg), grid), spec.layers(stage2_settings(cfg))
            else:
                extra, layers = s.get("max_words", 0), s["layers"]
            tokens = s["batch_size"] * s["gpus"] * (grid + extra)
            rows.append(JobEstimate(f"{stage} {task}", len(runs), s["steps"],
                                    s["steps"] * _transformer_flops(s["width"], layers, tokens),
                                    f"6 x params x tokens: width {s['width']}, {layers} layers, {grid}+{extra} tokens",
                                    stage, tuple(dict.fromkeys(r.dataset for r in runs)), task=task))
    return rows


def render(rows: list[JobEstimate], *, peak_flops: float, mfu: float, source: str) -> str:
    lines = [f"Estimated device-hours for {source}",
             f"assumption: peak {peak_flops / 1e12:.0f} TFLOP/s x MFU {mfu} (no GPU measurement exists here)", "",
             f"{'job kind':44s} {'jobs':>5s} {'steps':>7s} {'PFLOP/job':>10s} {'input h':>8s} {'h/job':>7s} "
             f"{'hours':>8s} {'mem MB':>7s}  basis"]
    total = 0.0
    for r in rows:
        h = r.hours(peak_flops, mfu)
        total += h
        mem = "—" if r.memory_mb is None else str(r.memory_mb)
        lines.append(f"{r.kind:44s} {r.jobs:5d} {r.steps:7d} {r.flops_per_job / 1e15:10.3f} {r.input_hours():8.1f} "
                     f"{h / max(r.jobs, 1):7.2f} {h:8.1f} {mem:>7s}  {r.basis}")
    lines += ["", f"total: {total:.1f} device-hours (input: measured where a benchmark row exists, else the assumed "
              "constant; data preparation, statistics, tables and the report not counted; mem MB: what the job asks "
              "for, lgvq.pipeline.resources' per-rule model, the largest over the row's datasets)"]
    return "\n".join(lines)
