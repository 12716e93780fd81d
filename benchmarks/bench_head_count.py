"""Attention heads vs step time on the CPU, at the second stage's and the heads' small widths.

At width 64 a 4-head layer attends in 16-dimensional heads: the same FLOPs as 1 head of 64, cut into
4x more, 4x thinner matrix products, which a CPU runs far below its peak. On a 16x16 code grid (256
codes + the caption: ~280 positions) attention dominates a step, so the head count sets the cost of
config/medium.yaml's second stage and understanding heads. Measured here, one thread (what a
Snakemake job gets with `--cores 2` and two jobs at once), interleaved over head counts, medians:

- `vqa`: the VQA head (HF GPT-2 over the code front end, lgvq.downstream.vqa) through HeadTask;
- `t2i_ar`: CodeGPT (lgvq.stage2.gpt) with a 30-token caption prefix;
- `t2i_diffusion`: the discrete-diffusion denoiser (lgvq.stage2.diffusion, nn.MultiheadAttention).

Each at a 8x8 and a 16x16 grid, width 64, 2 layers, batch 32 (config/medium.yaml's sizes); `ratio` is
the 4-head step time over each count's in the same run.

    python benchmarks/bench_head_count.py --out benchmarks/results/head_count_cpu.json
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lgvq.downstream.frontend import CodeFrontEnd  # noqa: E402
from lgvq.downstream.task import HeadTask  # noqa: E402
from lgvq.downstream.vqa import VQAModel  # noqa: E402
from lgvq.io import atomic_write_json  # noqa: E402
from lgvq.manifest import device_info, package_versions  # noqa: E402
from lgvq.stage2.diffusion import TextToCodeDiffusion  # noqa: E402
from lgvq.stage2.gpt import CodeGPT  # noqa: E402

WIDTH, LAYERS, BATCH, N_CODES, CAPTION, TEXT_DIM, WORDS, ANSWERS = 64, 2, 32, 128, 30, 384, 200, 50


def vqa_step(grid: int, heads: int) -> Callable[[int], None]:
    torch.manual_seed(0)
    frontend = CodeFrontEnd(torch.randn(N_CODES, 32), (grid, grid), WIDTH)
    model = VQAModel(frontend, WORDS, ANSWERS, layers=LAYERS, heads=heads, max_words=20)
    g = torch.Generator().manual_seed(0)
    batch = (torch.randint(0, N_CODES, (BATCH, grid, grid), generator=g), torch.randint(0, WORDS, (BATCH, 20), generator=g),
             torch.randint(1, 21, (BATCH,), generator=g), torch.randint(0, ANSWERS, (BATCH,), generator=g))

    def loss(m, b):
        codes, words, lengths, target = b
        return {"answer_ce": F.cross_entropy(m(codes, words, lengths), target)}

    task = HeadTask(model, loss, lr=3e-4)
    return lambda i: task.train_step(batch, i)


def ar_step(grid: int, heads: int) -> Callable[[int], None]:
    torch.manual_seed(0)
    model = CodeGPT(N_CODES, grid * grid, width=WIDTH, layers=LAYERS, heads=heads, n_prefix=CAPTION)
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, N_CODES, (BATCH, grid * grid), generator=g)
    prefix = torch.randn(BATCH, CAPTION, WIDTH, generator=g)
    task = HeadTask(model, lambda m, b: {"ce": m.loss(*b)}, lr=3e-4)
    return lambda i: task.train_step((codes, prefix), i)


def diffusion_step(grid: int, heads: int) -> Callable[[int], None]:
    torch.manual_seed(0)
    model = TextToCodeDiffusion(N_CODES, grid * grid, TEXT_DIM, width=WIDTH, layers=LAYERS, heads=heads, steps=20)
    g = torch.Generator().manual_seed(0)
    batch = (torch.randint(0, N_CODES, (BATCH, grid * grid), generator=g), torch.randn(BATCH, CAPTION, TEXT_DIM, generator=g),
             torch.ones(BATCH, CAPTION, dtype=torch.bool))
    task = HeadTask(model, lambda m, b: {"ce": m.loss(*b)}, lr=3e-4)
    return lambda i: task.train_step(batch, i)


MODELS = {"vqa": vqa_step, "t2i_ar": ar_step, "t2i_diffusion": diffusion_step}


def measure(make: Callable[[int, int], Callable[[int], None]], grid: int, head_counts: list[int], reps: int,
            steps: int) -> dict:
    steppers = {h: make(grid, h) for h in head_counts}
    for h in head_counts:
        steppers[h](0)  # warm-up
    times: dict[int, list[float]] = {h: [] for h in head_counts}
    for _ in range(reps):  # interleaved: load from other processes hits every count alike
        for h in head_counts:
            t0 = time.perf_counter()
            for i in range(steps):
                steppers[h](1 + i)
            times[h].append((time.perf_counter() - t0) / steps)
    med = {h: statistics.median(v) for h, v in times.items()}
    return {f"heads_{h}": {"s_per_step": round(med[h], 4), "ratio_4_over_this": round(med[4] / med[h], 2),
                           "samples": [round(t, 4) for t in times[h]]} for h in head_counts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--grids", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--heads", type=int, nargs="+", default=[4, 2, 1])
    args = ap.parse_args()
    if 4 not in args.heads:
        raise SystemExit("--heads must include 4 (the reference of every ratio)")
    torch.set_num_threads(1)
    results = {}
    for name, make in MODELS.items():
        for grid in args.grids:
            results[f"{name}_{grid}x{grid}"] = measure(make, grid, args.heads, args.reps, args.steps)
            print(name, f"{grid}x{grid}", {h: v["s_per_step"] for h, v in results[f"{name}_{grid}x{grid}"].items()},
                  flush=True)
    atomic_write_json(Path(args.out), {
        "benchmark": "CPU step time vs attention heads at width 64 (bench_head_count.py)",
        "sizes": {"width": WIDTH, "layers": LAYERS, "batch": BATCH, "n_codes": N_CODES, "caption_tokens": CAPTION},
        "threads": 1, "reps": args.reps, "steps_per_rep": args.steps, "precision": "fp32",
        "device": device_info(), "platform": platform.platform(), "versions": package_versions(),
        "results": results,
    })


if __name__ == "__main__":
    main()
