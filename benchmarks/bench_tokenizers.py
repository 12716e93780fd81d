"""Tokenizer training-step throughput (images/s) and peak memory, per model, at the default
and paper sizes; on CUDA also bf16 autocast + channels_last against fp32 eager (a ratio from
the same run). MFU comes from torch.utils.flop_counter's count of one training step.

    python benchmarks/bench_tokenizers.py --out benchmarks/results/tokenizers_cpu.json
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import resource
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lgvq.io import atomic_write_json  # noqa: E402
from lgvq.manifest import device_info, package_versions  # noqa: E402
from lgvq.tokenizers.registry import build_tokenizer  # noqa: E402
from lgvq.train.tokenizer_task import TokenizerTask  # noqa: E402

# Peak dense bf16 throughput used for MFU on known GPUs (vendor datasheet numbers, FLOP/s).
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def _sizes(profile: str) -> tuple[dict, int, int]:
    cfg = yaml.safe_load((ROOT / "config" / ("paper.yaml" if profile == "paper" else "config.yaml")).read_text())
    image_size = next(iter(cfg["datasets"].values()))["image_size"]
    batch = cfg["train"]["batch_size"]
    return cfg["tokenizers"], image_size, batch


def _words(n: int, dim: int = 64) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(0))


def bench(name: str, entry: dict, image_size: int, batch: int, device: torch.device, *, fast: bool,
          steps: int, warmup: int) -> dict:
    params = dict(entry["params"])
    params.pop("perceptual_weights", None)  # weights are not shipped; perceptual cost is excluded (recorded)
    model = build_tokenizer(entry["class"], params, image_size=image_size,
                            word_embeddings=lambda: _words(int(params.get("n_embed", 1024))))
    if fast:
        model = model.to(memory_format=torch.channels_last)
    task = TokenizerTask(model, None, lr=1e-4, betas=(0.5, 0.9), device=device)
    x = torch.randn(batch, 3, image_size, image_size, device=device)
    if fast:
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if fast else contextlib.nullcontext()
    # step index beyond disc_start so the adversarial path (the expensive one) is measured
    step = int(params.get("disc_start", 0)) + 1
    with autocast:
        for _ in range(warmup):
            task.train_step({"image": x}, step)
    flops = None
    try:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter, autocast:
            task.train_step({"image": x}, step)
        flops = counter.get_total_flops()
    except Exception:  # flop counting is best-effort; throughput stands on its own
        flops = None
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    with autocast:
        for _ in range(steps):
            task.train_step({"image": x}, step)
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    result = {"tokenizer": name, "class": entry["class"], "image_size": image_size, "batch": batch,
              "mode": "bf16+channels_last" if fast else "fp32 eager", "steps": steps,
              "images_per_s": round(batch * steps / dt, 2), "step_ms": round(1000 * dt / steps, 2),
              "flops_per_step": flops}
    if device.type == "cuda":
        result["peak_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        gpu = torch.cuda.get_device_name(0)
        peak = next((v for k, v in PEAK_FLOPS.items() if k in gpu), None)
        if peak and flops:
            result["mfu"] = round(flops * steps / dt / peak, 4)
    else:
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--profiles", nargs="+", default=["default", "paper"])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--paper-batch", type=int, default=None, help="override the paper batch (CPU: use 1-2)")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    rows = []
    for profile in args.profiles:
        tokenizers, image_size, batch = _sizes(profile)
        if profile == "paper" and args.paper_batch:
            batch = args.paper_batch
        for name, entry in tokenizers.items():
            modes = [False, True] if device.type == "cuda" else [False]
            base = None
            for fast in modes:
                r = bench(name, entry, image_size, batch, device, fast=fast, steps=args.steps, warmup=args.warmup)
                r["profile"] = profile
                if fast and base:
                    r["speedup_vs_fp32_eager"] = round(r["images_per_s"] / base["images_per_s"], 3)
                base = base or r
                rows.append(r)
                print(r, flush=True)
    atomic_write_json(args.out, {"benchmark": "tokenizer training step", "device": device_info(),
                                 "platform": platform.platform(), "versions": package_versions(),
                                 "torch_threads": torch.get_num_threads(), "results": rows,
                                 "note": "perceptual (VGG) loss excluded: weights not available offline"})


if __name__ == "__main__":
    main()
