"""Resident memory of an FID pass with and without the heap trimmer (lgvq/heap.py), same images, same
extractor, one process each.

The FID feature loop (clean-fid's reader: PIL decode, float resize, one extractor batch at a time) is
the loop that made reconstruction, stage-2 and completion jobs grow with the dataset
(benchmarks/results/scale_cpu.json): glibc keeps the freed batch buffers. Per setting of
`LGVQ_MALLOC_TRIM_S`: peak RssAnon (sampled every 50 ms), wall time, and the FID, which must be equal across
settings (its value means nothing: random-init extractor, both sides from one distribution); and the
same for default-size VQ-GAN training steps (the trimmer's cost where a job spends its time).

    python benchmarks/bench_heap.py --n 10000 --out benchmarks/results/heap_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHILD = """
import json, sys, threading, time
from lgvq.heap import start_heap_trimmer
start_heap_trimmer()  # as lgvq.cli.main does, from LGVQ_MALLOC_TRIM_S
import torch
from lgvq.metrics.extractors import ShapesCNN, ShapesCNNExtractor
from lgvq.metrics.fid import compute_fid
def rss_anon_mb():
    for line in open('/proc/self/status'):
        if line.startswith('RssAnon'):
            return int(line.split()[1]) / 1024
peak = [0.0]
def watch():
    while True:
        peak[0] = max(peak[0], rss_anon_mb()); time.sleep(0.05)
threading.Thread(target=watch, daemon=True).start()
a, b, size, threads, workload = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
torch.set_num_threads(threads)
torch.manual_seed(0)
if workload == 'fid':
    ext = ShapesCNNExtractor(ShapesCNN(8, input_size=size))
    t0 = time.perf_counter()
    out = {'fid': compute_fid(a, b, extractor=ext).value}
else:  # 'train:K': K default-size VQ-GAN+discriminator steps (fp32), after 3 warm-up steps
    sys.path.insert(0, 'benchmarks')
    from bench_cpu_speed import _default_config, tokenizer_step
    step, k = tokenizer_step(_default_config(), 'off'), int(workload.split(':')[1])
    for i in range(3):
        step(i)
    t0 = time.perf_counter()
    for i in range(k):
        step(3 + i)
    out = {'steps': k}
print(json.dumps({**out, 'wall_s': round(time.perf_counter() - t0, 1),
                  'peak_rss_anon_mb': round(peak[0]), 'end_rss_anon_mb': round(rss_anon_mb())}))
"""


def write_images(folder: Path, n: int, size: int, seed: int) -> None:
    """Random coloured rectangles on a dark background: PNGs that decode like the embedded data's."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        im = np.full((size, size, 3), 20, np.uint8)
        for _ in range(2):
            x, y, w, h = rng.integers(0, size // 2, 4) + (0, 0, 4, 4)
            im[y : y + h, x : x + w] = rng.integers(0, 256, 3)
        Image.fromarray(im).save(folder / f"{i:07d}.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10000, help="images on each side")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--periods", nargs="+", default=["0", "2"], help="LGVQ_MALLOC_TRIM_S values (0 = off)")
    ap.add_argument("--reps", type=int, default=2, help="runs per setting and workload (medians are reported)")
    ap.add_argument("--train-steps", type=int, default=20, help="timed tokenizer training steps per run")
    ap.add_argument("--work", type=Path, default=None, help="where the images go (default: a temporary folder)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    from lgvq.io import atomic_write_json
    from lgvq.manifest import device_info

    with tempfile.TemporaryDirectory() as tmp:
        work = a.work or Path(tmp)
        side_a, side_b = work / f"a{a.n}_{a.size}", work / f"b{a.n}_{a.size}"
        for folder, seed in ((side_a, 1), (side_b, 2)):
            if not folder.is_dir() or len(list(folder.iterdir())) != a.n:
                write_images(folder, a.n, a.size, seed)
        rows = []
        for workload in ("fid", f"train:{a.train_steps}"):
            for _ in range(a.reps):  # interleaved: a burst of load from other processes hits both settings alike
                for period in a.periods:
                    out = subprocess.run([sys.executable, "-c", CHILD, str(side_a), str(side_b), str(a.size),
                                          str(a.threads), workload], check=True, capture_output=True, text=True,
                                         cwd=ROOT, env={**os.environ, "LGVQ_MALLOC_TRIM_S": period}).stdout
                    rows.append({"workload": workload, "LGVQ_MALLOC_TRIM_S": period,
                                 **json.loads(out.strip().splitlines()[-1])})
                    print(json.dumps(rows[-1]), flush=True)
    fids = {r["fid"] for r in rows if r["workload"] == "fid"}
    if len(fids) != 1:  # the trimmer moves freed memory, never a number
        raise SystemExit(f"FID differs between trimmer settings: {sorted(fids)}")
    summary = []
    for workload in dict.fromkeys(r["workload"] for r in rows):
        med = {p: {k: statistics.median(r[k] for r in rows if r["workload"] == workload and r["LGVQ_MALLOC_TRIM_S"] == p)
                   for k in ("wall_s", "peak_rss_anon_mb")} for p in a.periods}
        off = med[next((p for p in a.periods if float(p) == 0), a.periods[0])]
        summary += [{"workload": workload, "LGVQ_MALLOC_TRIM_S": p, "median_wall_s": m["wall_s"],
                     "median_peak_rss_anon_mb": m["peak_rss_anon_mb"],
                     "time_ratio_vs_off": round(m["wall_s"] / off["wall_s"], 3),
                     "peak_ratio_vs_off": round(m["peak_rss_anon_mb"] / off["peak_rss_anon_mb"], 2)} for p, m in med.items()]
    atomic_write_json(a.out, {"benchmark": "bench_heap", "n_images_per_side": a.n, "size": a.size,
                              "threads": a.threads, "extractor": "shapes-cnn, random init (seed 0)",
                              "device": device_info(), "summary": summary, "rows": rows})


if __name__ == "__main__":
    main()
