"""What a forked DataLoader worker copies of a split's records: a list of `ImageRecord`s (what the
dataset held before) vs `PackedRecords` (lgvq/data/packed.py), same records, same reads.

COCO-like records (a JPEG path under a deep root, five ~60-character captions) are built in the
parent; a forked child reads every record once, as a worker over an epoch would (path and captions),
and reports how much its Private_Dirty grew (smaps_rollup): pages copied on write, memory the
worker no longer shares with the job. Also microseconds per
access and the parent's size of the records (tracemalloc).

    python benchmarks/bench_records.py --n 83000 --out benchmarks/results/records_cpu.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def coco_like(n: int):
    from lgvq.data.base import ImageRecord

    words = "a man riding a wave on top of a surfboard near the shore in the sunny afternoon".split()
    for i in range(n):
        caps = tuple(" ".join(words[(i + k + j) % len(words)] for j in range(11)) + f" {i}" for k in range(5))
        yield ImageRecord(i, Path(f"/data/datasets/coco/train2014/COCO_train2014_{i:012d}.jpg"), caps)


def private_dirty_mb() -> float:
    """Pages this process wrote since it was forked (copy-on-write copies included)."""
    for line in open("/proc/self/smaps_rollup"):
        if line.startswith("Private_Dirty"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no Private_Dirty in /proc/self/smaps_rollup")


def child(records, q) -> None:
    before = private_dirty_mb()
    t0 = time.perf_counter()
    total = 0
    for i in range(len(records)):
        r = records[i]
        total += len(str(r.path)) + sum(len(c) for c in r.captions)
    dt = time.perf_counter() - t0
    q.put({"worker_private_gain_mb": round(private_dirty_mb() - before, 1),
           "us_per_access": round(dt / len(records) * 1e6, 2), "chars_read": total})


def measure(mode: str, n: int) -> dict:
    from lgvq.data.packed import PackedRecords

    tracemalloc.start()
    records = list(coco_like(n))
    if mode == "packed":
        records = PackedRecords(records)
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    ctx = mp.get_context("fork")  # what DataLoader workers use on Linux
    q = ctx.Queue()
    p = ctx.Process(target=child, args=(records, q))
    p.start()
    row = q.get()
    p.join()
    return {"mode": mode, "n_records": n, "parent_records_mb": round(held / 2**20, 1), **row}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=83000, help="records (MS-COCO train: ~83k images)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--one", choices=("list", "packed"), help=argparse.SUPPRESS)  # the per-mode child
    a = ap.parse_args()
    from lgvq.io import atomic_write_json
    from lgvq.manifest import device_info

    if a.one:
        print(json.dumps(measure(a.one, a.n)))
        return
    rows = []
    for mode in ("list", "packed"):  # a fresh interpreter per mode: no heap left over from the other
        out = subprocess.run([sys.executable, __file__, "--one", mode, "--n", str(a.n), "--out", str(a.out)],
                             check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    atomic_write_json(a.out, {"benchmark": "bench_records", "device": device_info(), "rows": rows,
                              "worker_copy_ratio_list_over_packed": round(
                                  rows[0]["worker_private_gain_mb"] / max(rows[1]["worker_private_gain_mb"], 0.1), 1)})


if __name__ == "__main__":
    main()
