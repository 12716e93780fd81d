"""Second-stage sampling throughput: the GPT with vs without its key/value cache (tokens/s and
the ratio, same model, same seed, same run), and discrete-diffusion denoising steps/s.

    python benchmarks/bench_sampling.py --out benchmarks/results/sampling_cpu.json [--threads 1]

Sizes: "default" is config/config.yaml's stage2 (8x8 grid); "mid" a 16x16 grid (the paper's
256 tokens) at width 256 / 4 layers, affordable on a CPU; "paper" (width 1024, 16 layers) only
with --paper (minutes per sample without a GPU).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lgvq.io import atomic_write_json  # noqa: E402
from lgvq.manifest import device_info, package_versions  # noqa: E402
from lgvq.stage2.diffusion import TextToCodeDiffusion  # noqa: E402
from lgvq.stage2.gpt import CodeGPT  # noqa: E402

SIZES = {
    "default": dict(n_codes=128, grid=8, width=64, layers=2, heads=4, batch=16),
    "mid": dict(n_codes=1024, grid=16, width=256, layers=4, heads=8, batch=4),
    "paper": dict(n_codes=1024, grid=16, width=1024, layers=16, heads=16, batch=1),
}


def _timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def bench_gpt(size: dict, device: torch.device, repeats: int) -> dict:
    torch.manual_seed(0)
    n = size["grid"] ** 2
    m = CodeGPT(size["n_codes"], n, width=size["width"], layers=size["layers"], heads=size["heads"]).to(device).eval()
    out = {}
    for cached in (True, False):
        run = lambda: m.sample(size["batch"], generator=torch.Generator(device).manual_seed(0),  # noqa: E731
                               use_cache=cached, device=device)
        run()  # warm-up
        t = min(_timed(run, device) for _ in range(repeats))
        out["kv_cache" if cached else "no_cache"] = {"seconds": round(t, 4), "tokens_per_s": round(size["batch"] * n / t, 1)}
    same = torch.equal(m.sample(2, generator=torch.Generator(device).manual_seed(1), use_cache=True, device=device),
                       m.sample(2, generator=torch.Generator(device).manual_seed(1), use_cache=False, device=device))
    out["speedup_kv_cache"] = round(out["kv_cache"]["tokens_per_s"] / out["no_cache"]["tokens_per_s"], 2)
    out["same_samples"] = same
    return out


def bench_diffusion(size: dict, device: torch.device, repeats: int, steps: int = 10) -> dict:
    torch.manual_seed(0)
    n = size["grid"] ** 2
    m = TextToCodeDiffusion(size["n_codes"], n, 384, width=size["width"], layers=size["layers"], heads=size["heads"],
                            steps=steps).to(device).eval()
    text, valid = torch.randn(size["batch"], 30, 384, device=device), torch.ones(size["batch"], 30, dtype=torch.bool, device=device)
    run = lambda: m.sample(text, valid, generator=torch.Generator(device).manual_seed(0))  # noqa: E731
    run()
    t = min(_timed(run, device) for _ in range(repeats))
    return {"denoising_steps": steps, "seconds": round(t, 4), "steps_per_s": round(steps / t, 2),
            "images_per_s": round(size["batch"] / t, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--paper", action="store_true", help="also the paper size")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (a shared machine: 1)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    rows = []
    for name in ["default", "mid"] + (["paper"] if a.paper else []):
        size = SIZES[name]
        rows.append({"size": name, **size, "gpt": bench_gpt(size, device, a.repeats),
                     "diffusion": bench_diffusion(size, device, a.repeats)})
        print(rows[-1], flush=True)
    atomic_write_json(a.out, {"benchmark": "stage2 sampling", "device": device_info(), "torch_threads": torch.get_num_threads(),
                              "versions": package_versions(), "rows": rows})


if __name__ == "__main__":
    main()
