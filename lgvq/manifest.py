"""Provenance: a manifest.json beside every output.

Records what is needed to trust and reproduce a number: the config slice that produced it
and its hash, the seed, git revision (and whether the tree was dirty), package versions,
device, how the steps executed (`execution`: precision, TF32, channels_last, compile,
cudnn.benchmark), wall time and peak memory. Tables are built from manifests + metric files only.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from lgvq.io import atomic_write_json

TRACKED_PACKAGES = (
    "lgvq", "torch", "torchvision", "transformers", "torchmetrics", "clean-fid",
    "pycocoevalcap", "scikit-image", "numpy", "pandas", "snakemake", "nltk",
)


def config_hash(cfg: Any) -> str:
    """Stable short hash of a JSON-serialisable config slice (key order does not matter)."""
    blob = json.dumps(cfg, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def git_revision(repo: str | os.PathLike | None = None) -> dict[str, Any]:
    cwd = str(repo or Path(__file__).resolve().parent.parent)
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return {"revision": None, "dirty": None}
    if rev.returncode != 0:
        return {"revision": None, "dirty": None}
    return {"revision": rev.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str | None:
    """The CPU's model name (Linux /proc/cpuinfo), or None where it cannot be read: machines of one "kind" differ
    (the same 2-core profile measured ~25 % slower on one CPU than on another), so a timing names its CPU."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def device_info() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": sys.version.split()[0],
                            "cpu_count": os.cpu_count(), "cpu_model": cpu_model()}
    if "torch" in sys.modules:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["cuda_device"] = torch.cuda.get_device_name(0)
            info["cuda_peak_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return info


def execution_info(given: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every manifest's `execution`: what the job says it did (a training task's `Execution.record()`),
    over fp32 eager and the process-wide TF32 / cudnn.benchmark flags as they stand. torch is only
    asked when the job imported it (config hashing in the Snakefile must stay light)."""
    base: dict[str, Any] = {"precision": "fp32", "tf32": False, "channels_last": False, "compile": False,
                            "cudnn_benchmark": False}
    if "torch" in sys.modules:
        from lgvq.train.precision import backend_flags

        base.update(backend_flags())
    return {**base, **(given or {})}


def peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux.
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class RunRecord:
    """Start a clock at construction; `write(out_dir)` writes manifest.json there."""

    def __init__(self, step: str, config: Any, seed: int | None = None, **extra: Any) -> None:
        self.step = step
        self.config = config
        self.seed = seed
        self.extra = dict(extra)
        self.started = time.time()

    def write(self, out_dir: str | os.PathLike, *, name: str = "manifest.json", **more: Any) -> Path:
        manifest = {
            "step": self.step,
            "config": self.config,
            "config_hash": config_hash(self.config),
            "seed": self.seed,
            "git": git_revision(),
            "versions": package_versions(),
            "device": device_info(),
            "started_unix": round(self.started, 3),
            "wall_time_s": round(time.time() - self.started, 3),
            "peak_rss_mb": peak_rss_mb(),
            "argv": sys.argv,
            **self.extra,
            **more,
        }
        manifest["execution"] = execution_info(more.get("execution", self.extra.get("execution")))
        path = Path(out_dir) / name
        atomic_write_json(path, manifest)
        return path


def distinct_jobs(manifests: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One manifest per job: a job that writes its manifest into several folders (the reconstruction
    evaluation beside its codebook record, a reference shared by tables) has the same start time and
    command line in each copy. For sums of job wall time."""
    seen: set[tuple[Any, ...]] = set()
    out = []
    for m in manifests:
        key = (m.get("step"), m.get("started_unix"), tuple(m.get("argv") or ()))
        if key not in seen:
            seen.add(key)
            out.append(m)
    return out


def seconds_by_step(jobs: Iterable[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per kind of job (the manifest's `step`): {"jobs": how many, "seconds": their summed wall time}.
    Give it `distinct_jobs(...)`: a job with several manifests would count more than once."""
    out: dict[str, dict[str, float]] = {}
    for j in jobs:
        row = out.setdefault(str(j.get("step", "?")), {"jobs": 0, "seconds": 0.0})
        row["jobs"] += 1
        row["seconds"] += float(j.get("wall_time_s") or 0.0)
    return out
