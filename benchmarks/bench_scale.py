"""Peak memory and wall time of every stage's job as the dataset grows (issue 20, item 7).

The embedded generator writes N images (64 px by default); a tiny tokenizer trains a few steps;
then every stage's job runs through the CLI, one process each, as the Snakefile would run it.
Each process's peak RSS comes from the kernel (os.wait4's ru_maxrss), so the numbers are the
job's own, not this script's. One JSON row per stage and N:
`stage, n_images, peak_rss_mb, wall_s` (+ `rc`, and the log's last line when a job failed).

    python benchmarks/bench_scale.py --n 1000 10000 --out benchmarks/results/scale_cpu.json

`--code DIR` runs the jobs with another checkout's lgvq (e.g. the code before a change) on
artifacts built by this one: `--only eval/text-alignment --reuse` measures one stage before/after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lgvq.io import atomic_write_json
from lgvq.manifest import device_info, package_versions

TOK, VARIANT, SEED = "vqgan", "lg", 0
# Downsampling 8 (64 px -> an 8x8 code grid) keeps stage-2 sampling short: the benchmark is about data size.
TINY = {"ch": 16, "ch_mult": [1, 2, 2, 2], "num_res_blocks": 1, "attn_resolutions": [], "z_channels": 16,
        "embed_dim": 16, "n_embed": 64, "disc_start": 2, "disc_ch": 8, "disc_layers": 1}
STAGE2_TASKS = ("unconditional", "completion", "semantic", "t2i_diffusion", "t2i_ar")
DOWNSTREAM_TASKS = ("captioning", "vqa", "grounding")


def config(n: int, size: int, results: Path) -> dict:
    """All test images are evaluated (eval_images = the test split), so evaluations scale with N."""
    n_test = n - int(n * 0.8) - int(n * 0.1)
    return {
        "name": f"scale-{n}", "results_dir": str(results), "device": "cpu", "seeds": [SEED], "expensive_seeds": [SEED],
        "datasets": {"shapes": {"source": "shapes", "synth": {"n": n, "size": size, "seed": 0}, "image_size": size,
                                "eval_images": max(2, n_test)}},
        "text_encoder": {"name": "minilm", "max_length": 30},
        "tokenizers": {TOK: {"class": TOK, "params": dict(TINY)}},
        "lg": {"layers": 1},
        "train": {"steps": 4, "batch_size": 8, "lr": 0.0002, "ckpt_every": 2, "log_every": 1},
        "eval": {"shapes_cnn_epochs": 1},
        "downstream": {"enabled": True, "steps": 3, "batch_size": 8, "width": 16, "layers": 1, "heads": 2,
                       "max_words": 8, "beam": 2},
        "stage2": {"enabled": True, "steps": 3, "batch_size": 8, "width": 16, "layers": 1, "heads": 2,
                   "diffusion_steps": 3},
    }


def stages() -> list[tuple[str, list[str]]]:
    """(stage name, CLI arguments after the config/selection) in dependency order."""
    sel = ["--dataset", "shapes"]
    run = [*sel, "--tokenizer", TOK, "--variant", VARIANT, "--seed", str(SEED)]
    out = [("data/prepare", ["data", "prepare", *sel]),
           ("text/cache", ["text", "cache", *sel, "--out", "{results}/shapes/text/minilm.npz"]),
           ("metrics/train-extractor", ["metrics", "train-extractor", *sel]),
           ("tokenizer/train", ["tokenizer", "train", *run]), ("tokenizer/encode", ["tokenizer", "encode", *run]),
           ("eval/reconstruction", ["eval", "reconstruction", *run]),
           ("eval/text-alignment", ["eval", "text-alignment", *run]),
           ("stage2/labelmap-vq", ["stage2", "labelmap-vq", *sel])]
    out += [(f"stage2/{t}", ["stage2", "run", "--task", t, *run]) for t in STAGE2_TASKS]
    out += [(f"downstream/{t}", ["downstream", "run", "--task", t, *run]) for t in DOWNSTREAM_TASKS]
    return out


def measure(args: list[str], env: dict, log: Path) -> tuple[int, float, float]:
    """-> (exit status, peak RSS in MB, wall seconds) of one CLI process."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "lgvq.cli", *args], stdout=fh, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024, time.perf_counter() - t0  # ru_maxrss: KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--work", type=Path, default=Path("/tmp/lgvq-bench-scale"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--only", nargs="*", default=None, help="stage names to run (default: all)")
    ap.add_argument("--reuse", action="store_true", help="keep the artifacts already under --work")
    ap.add_argument("--code", type=Path, default=ROOT, help="checkout whose lgvq runs the jobs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--label", default=None, help="written into every row (e.g. before / after a change)")
    a = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(a.code.resolve()), "OMP_NUM_THREADS": str(a.threads)}
    rows = []
    for n in a.n:
        work = a.work / f"n{n}"
        if work.exists() and not a.reuse:
            raise SystemExit(f"{work} exists: remove it or pass --reuse")
        (work / "logs").mkdir(parents=True, exist_ok=True)
        cfg_path = work / "config.yaml"
        cfg_path.write_text(yaml.safe_dump(config(n, a.size, work / "results")))
        for stage, cli in stages():
            if a.only and stage not in a.only:
                continue
            log = work / "logs" / f"{stage.replace('/', '_')}.log"
            threads = [] if cli[0] in ("data", "text") else ["--threads", str(a.threads)]  # as the rules call them
            cli = [c.format(results=work / "results") for c in cli]
            rc, rss, wall = measure([*cli, "--config", str(cfg_path), *threads], env, log)
            row = {"stage": stage, "n_images": n, "peak_rss_mb": round(rss, 1), "wall_s": round(wall, 2), "rc": rc,
                   **({"label": a.label} if a.label else {})}
            if rc != 0:
                lines = log.read_text(errors="replace").strip().splitlines()
                row["error"] = lines[-1] if lines else ""
            elif stage.startswith("eval/"):  # the numbers too: runs of two checkouts must agree on them
                kind = stage.split("/")[1].replace("-", "_")
                record = work / "results" / "shapes" / "eval" / kind / TOK / VARIANT / f"seed{SEED}" / "metrics.json"
                row["metrics"] = json.loads(record.read_text())["metrics"]
            print(json.dumps(row), flush=True)
            rows.append(row)
            if rc != 0 and not stage.startswith(("stage2/", "downstream/")):
                break  # every later stage needs this one's output
    atomic_write_json(a.out, {"benchmark": "bench_scale", "code": str(a.code.resolve()), "image_size": a.size,
                              "tokenizer": {TOK: TINY}, "device": device_info(), "packages": package_versions(),
                              "rows": rows})


if __name__ == "__main__":
    main()
