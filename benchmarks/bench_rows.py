"""Reading a text cache's rows: positional reads (`lgvq.arrays.RowArray`, what jobs use) vs a memory map
of the same member (what they used before), in one process each, same batches.

Per path: microseconds per batch of random rows (the per-token features, the widest member) and what the
job's resident set gained after reading `--batches` batches, split into anonymous and file-backed pages.
A mapped page stays resident (RssFile) after its batch is gone; a positional read leaves nothing behind.

    python benchmarks/bench_rows.py --cache RESULTS/shapes/text/minilm.npz --out benchmarks/results/rows_cpu.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHILD = """
import json, sys, time
import numpy as np
from lgvq.text.cache import TextCache
def parts():
    d = {}
    for line in open('/proc/self/status'):
        k, _, v = line.partition(':')
        if k in ('RssAnon', 'RssFile'):
            d[k] = int(v.split()[0]) / 1024
    return d
path, mode, batches, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
cache = TextCache.load(path)
tokens = cache.tokens
if mode == 'memmap':  # the same bytes, mapped
    tokens = np.memmap(tokens.path, dtype=tokens.dtype, mode='r', offset=tokens.offset, shape=tokens.shape)
rng = np.random.default_rng(0)
rows = [rng.choice(len(cache), batch, replace=False) for _ in range(batches)]
before = parts()
t0 = time.perf_counter()
for r in rows:
    x = np.asarray(tokens[np.sort(r)], dtype=np.float32)
dt = time.perf_counter() - t0
after = parts()
print(json.dumps({'mode': mode, 'us_per_batch': round(dt / batches * 1e6, 1), 'batches': batches, 'batch': batch,
                  'rows_in_cache': len(cache), 'row_bytes': int(tokens[0].nbytes),
                  'rss_anon_gain_mb': round(after['RssAnon'] - before['RssAnon'], 1),
                  'rss_file_gain_mb': round(after['RssFile'] - before['RssFile'], 1)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--batches", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    from lgvq.io import atomic_write_json
    from lgvq.manifest import device_info

    rows = []
    for mode in ("rows", "memmap", "rows"):  # rows twice: the second run reads from a warm page cache like memmap
        out = subprocess.run([sys.executable, "-c", CHILD, str(a.cache), mode, str(a.batches), str(a.batch)],
                             check=True, capture_output=True, text=True, cwd=ROOT).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    rows = rows[1:]  # the cold first run only warmed the page cache
    ratio = rows[1]["us_per_batch"] / rows[0]["us_per_batch"]
    atomic_write_json(a.out, {"benchmark": "bench_rows", "cache": str(a.cache), "device": device_info(), "rows": rows,
                              "time_ratio_rows_over_memmap": round(ratio, 2)})


if __name__ == "__main__":
    main()
