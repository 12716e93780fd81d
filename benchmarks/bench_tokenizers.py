"""Tokenizer training-step throughput (images/s) and peak memory, per model, at the default
and paper sizes, in every mode the trainer offers: fp32 eager, torch.compile, and on CUDA the
fast path (bf16 autocast, channels_last, TF32, fused Adam, pinned host batches) with and without
compile — each a ratio against fp32 eager measured in the same run. MFU comes from
torch.utils.flop_counter's count of one eager training step.

    python benchmarks/bench_tokenizers.py --out benchmarks/results/tokenizers_cpu.json
"""

from __future__ import annotations

import argparse
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


# (label, fast path, torch.compile): every mode is reported as a ratio against fp32 eager, the
# first row of its tokenizer, measured in the same run.
CPU_MODES = [("fp32 eager", False, False), ("torch.compile", False, True)]
CUDA_MODES = [("fp32 eager", False, False), ("bf16+channels_last+TF32+fused Adam", True, False),
              ("fast path + torch.compile", True, True)]


def bench(name: str, entry: dict, image_size: int, batch: int, device: torch.device, *, mode: str, fast: bool,
          compile: bool, steps: int, warmup: int) -> dict:
    params = dict(entry["params"])
    params.pop("perceptual_weights", None)  # weights are not shipped; perceptual cost is excluded (recorded)
    torch.manual_seed(0)
    model = build_tokenizer(entry["class"], params, image_size=image_size,
                            word_embeddings=_words)
    if device.type == "cuda":  # TF32 flags are process-wide: the fp32 baseline must not inherit a fast row's
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    # the training task applies the modes itself, exactly as `lgvq tokenizer train` does
    task = TokenizerTask(model, None, lr=1e-4, betas=(0.5, 0.9), device=device, fast_path=fast, compile=compile)
    x = torch.randn(batch, 3, image_size, image_size)
    # step index beyond disc_start so the adversarial path (the expensive one) is measured
    step = int(params.get("disc_start", 0)) + 1
    t0 = time.perf_counter()
    for _ in range(warmup):  # includes compilation for the compiled modes
        task.train_step({"image": x}, step)
    warmup_s = time.perf_counter() - t0
    flops = None
    if not compile:  # the count is the model's, not the mode's; the compiled graph hides it from the counter
        try:
            from torch.utils.flop_counter import FlopCounterMode

            with FlopCounterMode(display=False) as counter:
                task.train_step({"image": x}, step)
            flops = counter.get_total_flops()
        except Exception:  # flop counting is best-effort; throughput stands on its own
            flops = None
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        task.train_step({"image": x}, step)
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    result = {"tokenizer": name, "class": entry["class"], "image_size": image_size, "batch": batch,
              "mode": mode, "steps": steps, "warmup_steps": warmup, "warmup_s": round(warmup_s, 2),
              "images_per_s": round(batch * steps / dt, 2), "step_ms": round(1000 * dt / steps, 2),
              "flops_per_step": flops}
    if device.type == "cuda":
        result["peak_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    else:
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def _mfu(result: dict, flops: int | None, device: torch.device) -> None:
    if device.type != "cuda" or not flops:
        return
    gpu = torch.cuda.get_device_name(0)
    peak = next((v for k, v in PEAK_FLOPS.items() if k in gpu), None)
    if peak:
        result["mfu"] = round(flops * result["images_per_s"] / result["batch"] / peak, 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--profiles", nargs="+", default=["default", "paper"])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--paper-batch", type=int, default=None, help="override the paper batch (CPU: use 1-2)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile modes (they compile first)")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    for profile in args.profiles:
        tokenizers, image_size, batch = _sizes(profile)
        if profile == "paper" and args.paper_batch:
            batch = args.paper_batch
        for name, entry in tokenizers.items():
            base = None
            for mode, fast, comp in (CUDA_MODES if device.type == "cuda" else CPU_MODES):
                if comp and args.no_compile:
                    continue
                r = bench(name, entry, image_size, batch, device, mode=mode, fast=fast, compile=comp,
                          steps=args.steps, warmup=max(args.warmup, 2 if comp else 0))
                r["profile"] = profile
                base = base or r
                r["speedup_vs_fp32_eager"] = round(r["images_per_s"] / base["images_per_s"], 3)
                _mfu(r, base["flops_per_step"], device)
                rows.append(r)
                print(r, flush=True)
    atomic_write_json(args.out, {"benchmark": "tokenizer training step", "device": device_info(),
                                 "platform": platform.platform(), "versions": package_versions(),
                                 "torch_threads": torch.get_num_threads(), "results": rows,
                                 "note": "perceptual (VGG) loss excluded: weights not available offline"})


if __name__ == "__main__":
    main()
