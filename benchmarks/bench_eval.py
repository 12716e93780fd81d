"""Evaluation throughput: code encoding (images/s per tokenizer, default size) and FID —
feature extraction images/s and the time the cached reference statistics save (cold vs warm
cache, same folders, same run).

    python benchmarks/bench_eval.py --out benchmarks/results/eval_cpu.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lgvq.io import atomic_write_json  # noqa: E402
from lgvq.manifest import device_info, package_versions  # noqa: E402
from lgvq.metrics.extractors import ShapesCNN, ShapesCNNExtractor  # noqa: E402
from lgvq.metrics.fid import compute_fid  # noqa: E402
from lgvq.tokenizers.registry import build_tokenizer  # noqa: E402


def bench_encode(device: torch.device, n: int) -> list[dict]:
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    size = next(iter(cfg["datasets"].values()))["image_size"]
    rows = []
    for name, entry in cfg["tokenizers"].items():
        torch.manual_seed(0)
        model = build_tokenizer(entry["class"], dict(entry["params"]), image_size=size,
                                word_embeddings=lambda n: torch.randn(n, 64))
        model.to(device).eval()
        x = torch.rand(n, 3, size, size, device=device) * 2 - 1
        model.encode_codes(x[:8])
        t0 = time.perf_counter()
        for i in range(0, n, 64):
            model.encode_codes(x[i : i + 64])
        dt = time.perf_counter() - t0
        rows.append({"tokenizer": name, "image_size": size, "images": n, "seconds": round(dt, 3),
                     "images_per_s": round(n / dt, 1)})
        print(rows[-1], flush=True)
    return rows


def bench_fid(n: int) -> dict:
    torch.manual_seed(0)
    extractor = ShapesCNNExtractor(ShapesCNN(16, input_size=32))
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        a, b, cache = Path(tmp) / "a", Path(tmp) / "b", Path(tmp) / "cache"
        for folder in (a, b):
            folder.mkdir()
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:05d}.png")
        t0 = time.perf_counter()
        cold = compute_fid(a, b, extractor=extractor, cache_dir=cache)
        t_cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        warm = compute_fid(a, b, extractor=extractor, cache_dir=cache)
        t_warm = time.perf_counter() - t0
    assert abs(cold.value - warm.value) < 1e-6
    return {"extractor": "shapes-cnn", "images_per_side": n, "cold_cache_s": round(t_cold, 3),
            "warm_cache_s": round(t_warm, 3), "feature_images_per_s_cold": round(2 * n / t_cold, 1),
            "cache_speedup": round(t_cold / t_warm, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--images", type=int, default=512)
    a = ap.parse_args()
    device = torch.device(a.device)
    with torch.no_grad():
        encode = bench_encode(device, a.images)
    fid = bench_fid(a.images)
    print(fid)
    atomic_write_json(a.out, {"benchmark": "evaluation throughput", "device": device_info(),
                              "torch_threads": torch.get_num_threads(), "versions": package_versions(),
                              "encode": encode, "fid": fid})


if __name__ == "__main__":
    main()
