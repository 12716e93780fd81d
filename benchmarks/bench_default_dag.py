"""Wall time of the default DAG (`make tables`: config/config.yaml, embedded data) from a fresh
clone: the default profile's target is 20 minutes on 2 CPU cores (the README's results section
quotes the measured time).

    python benchmarks/bench_default_dag.py --out benchmarks/results/default_dag_cpu.json
    python benchmarks/bench_default_dag.py --config config/medium.yaml --out benchmarks/results/medium_dag_cpu.json

Clones HEAD (committed work only) into a scratch folder, runs `make setup` there (not timed:
it installs packages), then times `make tables` and sums the wall times of the jobs' manifests.
Run it on an otherwise idle machine: every other process shares the cores with the DAG.
`--setup-only` stops after `make setup` (while the machine is still busy); `--prepared` then reuses that
clone, checked out at this checkout's HEAD, and times only `make tables` (its setup time is recorded as null).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lgvq.config import load_config  # noqa: E402
from lgvq.io import atomic_write_json  # noqa: E402
from lgvq.manifest import device_info, distinct_jobs, git_revision, seconds_by_step  # noqa: E402


def _run(cmd: list[str], cwd: Path, log: Path) -> float:
    t0 = time.perf_counter()
    with log.open("w") as f:
        subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - t0


def holds_job_outputs(results: Path) -> bool:
    """A job's manifest under the profile's results_dir; the folder alone does not count (the default's
    `results/` is tracked, for its README)."""
    return next(results.rglob("manifest.json"), None) is not None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--workdir", default=None, help="scratch folder for the clone (default: a new temporary one)")
    ap.add_argument("--cores", default="all")
    ap.add_argument("--config", default="config/config.yaml", help="profile to time (config/medium.yaml: the budgets)")
    ap.add_argument("--setup-only", action="store_true", help="clone and `make setup`, time nothing")
    ap.add_argument("--prepared", action="store_true",
                    help="reuse the clone a --setup-only run left in --workdir, checked out at this HEAD")
    args = ap.parse_args()
    if args.prepared and not args.workdir:
        ap.error("--prepared needs the --workdir of a --setup-only run")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="lgvq-dag-"))
    clone = work / "lgvq-bench"
    setup_s: float | None = None
    if args.prepared:
        if not (clone / ".venv").is_dir():
            sys.exit(f"{clone}: no clone set up there (run with --setup-only first)")
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        subprocess.run(["git", "fetch", "-q", str(ROOT), head], cwd=clone, check=True)
        subprocess.run(["git", "checkout", "-q", "--detach", head], cwd=clone, check=True)
    else:
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        setup_s = _run(["make", "setup"], clone, work / "setup.log")
        if args.setup_only:
            print(f"set up in {setup_s:.0f} s: {clone}")
            return
    results = clone / load_config(clone / args.config)["results_dir"]
    if holds_job_outputs(results):
        sys.exit(f"{results} holds job outputs: a timed run starts from none")
    tables_s = _run(["make", "tables", f"CORES={args.cores}", f"CONFIG={args.config}"], clone, work / "tables.log")
    jobs = distinct_jobs(json.loads(p.read_text()) for p in results.rglob("manifest.json")
                         if "tables" not in p.parts)
    done = re.findall(r"(\d+) of (\d+) steps \(100%\) done", (work / "tables.log").read_text())
    job_s = sum(float(j.get("wall_time_s", 0.0)) for j in jobs)
    # Where the time goes, per kind of job (the manifest's `step`): what to cut to meet the budget.
    by_step = {k: {"jobs": v["jobs"], "seconds": round(v["seconds"], 1)}
               for k, v in sorted(seconds_by_step(jobs).items(), key=lambda kv: -kv[1]["seconds"])}
    result = {"benchmark": f"DAG wall time (make tables, {args.config})", "config": args.config,
              "git": git_revision(clone), "device": device_info(), "platform": platform.platform(),
              "cores_flag": args.cores, "cpu_count": os.cpu_count(),
              "setup_s": None if setup_s is None else round(setup_s, 1), "make_tables_s": round(tables_s, 1),
              "make_tables_min": round(tables_s / 60, 1), "jobs_with_manifest": len(jobs),
              "snakemake_jobs": int(done[-1][1]) if done else None,
              "job_seconds_sum": round(job_s, 1), "job_seconds_by_step": by_step,
              "log": str(work / "tables.log")}
    atomic_write_json(args.out, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
