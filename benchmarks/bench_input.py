"""Input pipeline throughput: images/s delivered by lgvq.data.loader at 256 px from 1024 px JPEGs
(CelebA-HQ's size), with 0, 1 and 2 worker processes, from the JPEGs (full decode, or JPEG draft)
and from the split prepared once at 256 px (datasets.<name>.prepare_resized).

    python benchmarks/bench_input.py --out benchmarks/results/input_pipeline_cpu.json

No model runs: this is the rate at which batches could be fed, the ceiling a training step of that
many ms per batch would be held to.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lgvq.data.base import DatasetSource, ImageRecord  # noqa: E402
from lgvq.data.dataset import ImageTextDataset  # noqa: E402
from lgvq.data.loader import available_cpus, epoch_batch_indices, image_batches  # noqa: E402
from lgvq.data.resized import ResizedSource, write_resized  # noqa: E402
from lgvq.io import atomic_write_json  # noqa: E402
from lgvq.manifest import device_info, package_versions  # noqa: E402
from lgvq.train.loop import epoch_order  # noqa: E402


class Jpegs(DatasetSource):
    name = "bench-jpegs"

    def splits(self):
        return ["train"]

    def records(self, split):
        return [ImageRecord(i, p, (f"image {i}",)) for i, p in enumerate(sorted(self.root.glob("*.jpg")))]


def synthesise(root: Path, n: int, size: int) -> None:
    """Photo-like JPEGs (gradients, shapes and mild noise, quality 90, as CelebA-HQ's files)."""
    rng = np.random.default_rng(0)
    x, y = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size))
    for i in range(n):
        base = np.stack([x * rng.random(), y * rng.random(), (x + y) / 2], -1) * 255
        noisy = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
        im = Image.fromarray(noisy)
        d = ImageDraw.Draw(im)
        for _ in range(4):
            x0, y0 = rng.integers(0, size * 3 // 4, 2)
            d.ellipse((x0, y0, x0 + size // 4, y0 + size // 5), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        im.save(root / f"{i:04d}.jpg", quality=90)


def measure(records, size: int, batch: int, workers: int, draft: bool, epochs: int, step_ms: float) -> dict:
    data = ImageTextDataset(records, image_size=size, train=True, resize_mode="resize", seed=0, jpeg_draft=draft)
    n_images, t0 = 0, time.perf_counter()
    for epoch in range(epochs):
        data.set_epoch(epoch)
        plan = epoch_batch_indices(len(data), batch, epoch_order(len(data), 0, epoch))
        for b in image_batches(data, plan, workers=workers, prefetch=2):
            n_images += b["image"].shape[0]
            if step_ms:
                time.sleep(step_ms / 1000)  # a GPU step: the training thread waits, the CPU is free
    seconds = time.perf_counter() - t0
    return {"images": n_images, "seconds": round(seconds, 3), "images_per_s": round(n_images / seconds, 1),
            "ms_per_batch": round(1000 * seconds * batch / n_images, 1), "simulated_step_ms": step_ms}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--source-size", type=int, default=1024)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=2, help="epochs timed per setting (each starts its workers)")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--step-ms", type=float, nargs="+", default=[0.0, 33.0],
                    help="simulated GPU step per batch (0: decoding alone; 33: the issue's step at the paper's size)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "jpegs"
        root.mkdir()
        synthesise(root, args.images, args.source_size)
        source = Jpegs(root)
        t0 = time.perf_counter()
        write_resized(source, Path(tmp) / "prepared", size=args.size, resize_mode="resize", jpeg_draft=False)
        prepare_s = time.perf_counter() - t0
        prepared = ResizedSource(source, Path(tmp) / "prepared", size=args.size, resize_mode="resize",
                                 jpeg_draft=False, key="bench")
        inputs = {"jpeg (full decode)": (source, False), "jpeg (draft)": (source, True),
                  "prepared 256 px png": (prepared, False)}
        for step_ms in args.step_ms:
            for name, (src, draft) in inputs.items():
                for w in args.workers:
                    row = {"input": name, "workers": w, **measure(src.records("train"), args.size, args.batch_size,
                                                                  w, draft, args.epochs, step_ms)}
                    rows.append(row)
                    print(row, flush=True)
    for r in rows:
        base = next(b["images_per_s"] for b in rows if b["input"] == "jpeg (full decode)" and b["workers"] == 0
                    and b["simulated_step_ms"] == r["simulated_step_ms"])
        r["speedup_vs_full_decode_in_process"] = round(r["images_per_s"] / base, 2)
    result = {"kind": "input_pipeline", "source": f"{args.images} synthetic {args.source_size}px JPEGs (quality 90)",
              "image_size": args.size, "batch_size": args.batch_size, "epochs_per_row": args.epochs,
              "prepare_seconds": round(prepare_s, 2), "rows": rows,
              "environment": {"cpus_available": available_cpus(), "cpu_count": os.cpu_count(),
                              "load_average": os.getloadavg(), "torch_threads": 1, **device_info(),
                              "packages": package_versions()}}
    if args.out:
        atomic_write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
