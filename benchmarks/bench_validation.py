"""What the validation curve costs a training job, and what `val_max_points` leaves of it.

Every training job validates every `val_every` steps (a fixed pass over `val_items` val examples, eval
mode; lgvq.train.loop), so the cost is a fixed share of every step however long the run: the paper
profile's 200,000-step tokenizers would validate 8,000 times at `val_every: 25`. `val_max_points`
(default 100) widens the cadence of long runs to ceil(steps / val_max_points).

Measured here on the pipeline's own jobs (lgvq.pipeline.tokenizer.train, lgvq.pipeline.downstream.run)
in one process, one torch thread: the job's training loop and its validation passes are timed by
wrapping them, so `overhead` = validation seconds / (loop seconds - validation seconds) at the cadence
run (the first pass also builds the cached val batches: `first_validation_s` beside the median). Two jobs,
each on a fresh results folder under --work:

- `tokenizer`: the default profile's VQ-GAN (config/config.yaml, 32 px, batch 8, 128 val images);
- `vqa_head`: config/medium.yaml's VQA head (16x16 codes of a briefly trained medium tokenizer, batch 32,
  256 val questions, two front-end convolutions: its `per_task` entry).

Each runs uncapped (`val_max_points: 0`: every `val_every` steps, the per-step tax any run pays) and
capped at `--capped-points` (default 3, so that the cap binds on these short runs as the default 100
binds on long ones), interleaved `--repeats` times; a row's `ratio` is the uncapped loop time over the
capped one in the same repeat. The `cadence` rows are arithmetic, not measured: each profile's runs,
their validations before and after the default cap.

    python benchmarks/bench_validation.py --out benchmarks/results/validation_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from lgvq.config import load_config  # noqa: E402
from lgvq.io import atomic_write_json  # noqa: E402
from lgvq.manifest import cpu_model  # noqa: E402
from lgvq.pipeline import downstream, tokenizer  # noqa: E402
from lgvq.pipeline.data import prepare  # noqa: E402
from lgvq.sections import task_section  # noqa: E402
from lgvq.train import loop  # noqa: E402
from lgvq.train.loop import validation_interval  # noqa: E402


class Timers:
    """Seconds spent in the training loop and in its validation passes, by wrapping both."""

    def __init__(self) -> None:
        self.loop_s = 0.0
        self.calls: list[float] = []  # seconds of each validation pass (the first also builds the val batches)

    def timed_validate(self, validate):
        if validate is None:
            return None

        def timed():
            t0 = time.perf_counter()
            out = validate()
            self.calls.append(time.perf_counter() - t0)
            return out

        return timed

    def install(self) -> None:
        inner_loop, inner_rec, inner_val = loop.train_loop, tokenizer._reconstruction_validation, downstream.validation

        def train_loop(*a, **k):
            t0 = time.perf_counter()
            try:
                return inner_loop(*a, **k)
            finally:
                self.loop_s += time.perf_counter() - t0

        loop.train_loop = train_loop
        tokenizer._reconstruction_validation = lambda *a, **k: self.timed_validate(inner_rec(*a, **k))
        downstream.validation = lambda *a, **k: self.timed_validate(inner_val(*a, **k))


def job(cfg: dict, kind: str, steps: int) -> dict:
    """One timed training job on `cfg` (its results folder already prepared)."""
    timers = Timers()
    timers.install()
    saved = (loop.train_loop, tokenizer._reconstruction_validation, downstream.validation)
    try:
        if kind == "tokenizer":
            tokenizer.train(cfg, "shapes", "vqgan", "base", 1)
        else:
            downstream.run(cfg, "vqa", "shapes", "vqgan", "base", 0)
    finally:
        loop.train_loop, tokenizer._reconstruction_validation, downstream.validation = saved
    val_s = sum(timers.calls)
    train_s = timers.loop_s - val_s
    return {"steps": steps, "loop_s": round(timers.loop_s, 2), "validation_s": round(val_s, 2),
            "validations": len(timers.calls), "first_validation_s": round(timers.calls[0], 3),
            "median_validation_s": round(statistics.median(timers.calls[1:] or timers.calls), 3),
            "train_step_s": round(train_s / steps, 4), "overhead": round(val_s / train_s, 4)}


def profile_cadence() -> list[dict]:
    """Validations per run before and after the cap, for each profile's longest runs (arithmetic)."""
    rows = []
    for name in ("config.yaml", "medium.yaml", "paper.yaml"):
        cfg = load_config(ROOT / "config" / name)
        runs = [("train", None)] + [("downstream", t) for t in cfg["downstream"]["tasks"]]
        for section, task in runs:
            s = task_section(cfg, section, task) if task else cfg[section]
            every, cap, steps = s["val_every"], s["val_max_points"], s["steps"]
            if not every:
                continue
            capped = validation_interval(every, steps, cap)
            rows.append({"config": name, "job": task or "tokenizer", "steps": steps, "val_every": every,
                         "validations_uncapped": -(-steps // every), "interval_capped": capped,
                         "validations_capped": -(-steps // capped)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "validation_cpu.json")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--tokenizer-steps", type=int, default=200)
    ap.add_argument("--head-steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--capped-points", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(1)
    work = a.work or Path(tempfile.mkdtemp(prefix="bench_validation_"))

    def config(name: str, kind: str, results: Path, capped: bool) -> dict:
        cfg = load_config(ROOT / "config" / name)  # a fresh dict per call
        cfg["results_dir"] = str(results)
        section = "train" if kind == "tokenizer" else "downstream"
        cfg[section]["steps"] = a.tokenizer_steps if kind == "tokenizer" else a.head_steps
        cfg[section]["ckpt_every"] = 10**9  # checkpoints are not what is measured
        (cfg[section].get("per_task") or {}).get("vqa", {}).pop("steps", None)
        cfg[section]["val_max_points"] = a.capped_points if capped else 0
        return cfg

    # The VQA head needs codes: a medium tokenizer trained briefly (what it learns does not matter here).
    codes_root = work / "medium_codes"
    base = load_config(ROOT / "config" / "medium.yaml")
    base["results_dir"] = str(codes_root)
    base["train"]["steps"] = 20
    prepare(base, "shapes")
    tokenizer.train(base, "shapes", "vqgan", "base", 0)
    tokenizer.encode(base, "shapes", "vqgan", "base", 0)

    rows = []
    for repeat in range(a.repeats):
        for kind, name in (("tokenizer", "config.yaml"), ("vqa_head", "medium.yaml")):
            pair = {}
            for capped in (False, True):
                results = work / f"{kind}_{repeat}_{'capped' if capped else 'uncapped'}"
                if kind == "vqa_head":  # the head reads the medium codes: a copy of that results folder
                    shutil.copytree(codes_root, results)
                cfg = config(name, kind, results, capped)
                if kind == "tokenizer":
                    prepare(cfg, "shapes")
                steps = cfg["train" if kind == "tokenizer" else "downstream"]["steps"]
                pair[capped] = job(cfg, kind, steps)
                shutil.rmtree(results)
            rows.append({"job": kind, "config": name, "repeat": repeat, "val_max_points": a.capped_points,
                         "uncapped": pair[False], "capped": pair[True],
                         "ratio": round(pair[False]["loop_s"] / pair[True]["loop_s"], 3)})
            print(json.dumps(rows[-1]), flush=True)
    shutil.rmtree(codes_root, ignore_errors=True)
    summary = {kind: {"overhead_uncapped_median": statistics.median(r["uncapped"]["overhead"] for r in rows if r["job"] == kind),
                      "overhead_capped_median": statistics.median(r["capped"]["overhead"] for r in rows if r["job"] == kind),
                      "ratio_median": statistics.median(r["ratio"] for r in rows if r["job"] == kind)}
               for kind in ("tokenizer", "vqa_head")}
    atomic_write_json(a.out, {
        "benchmark": "validation curve: its share of a training job, uncapped vs val_max_points (bench_validation.py)",
        "device": {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
                   "threads": 1, "precision": "fp32 (cpu_bf16 auto: off without bf16 matrix units)"},
        "note": "uncapped: the per-step tax of validating every val_every steps (what every run paid before the cap); "
                "capped: the same job with the cap binding (val_max_points = --capped-points on these short runs, as "
                "the default 100 binds on long ones); `cadence`: each profile's validations per run, arithmetic",
        "rows": rows, "summary": summary, "cadence": profile_cadence()})
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
