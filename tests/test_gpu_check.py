"""benchmarks/gpu_check.sh end to end in its dry mode (tiny sizes, device cpu): every step writes its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # six steps, each a fresh Python with torch, and five CLI commands: about a minute or two
def test_the_gpu_check_runs_end_to_end_in_dry_mode_and_writes_every_steps_json(tmp_path):
    out = tmp_path / "check"
    env = {**os.environ, "GPU_CHECK_DRY": "1", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(out)], env=env, capture_output=True,
                          text=True, timeout=1500, check=False)  # under the dry limits (4x the GPU ones)
    assert proc.returncode == 0, proc.stdout + proc.stderr + "".join(p.read_text()[-2000:] for p in out.glob("*.log"))
    got = {name: json.loads((out / f"{name}.json").read_text())
           for name in ("env", "tokenizer", "heads", "sampling", "cli", "dp_tests", "summary")}
    assert got["env"]["dry"] is True and got["env"]["torch"]
    tok = got["tokenizer"]
    assert tok["device"] == "cpu" and tok["flops_per_step"] > 0 and tok["fp32_eager"]["seconds_per_step"] > 0
    assert tok["fast_path"]["execution"]["precision"] == "fp32"  # no fast path on the CPU
    assert tok["lg_cost"] > 0 and tok["fast_path"]["host_syncs_per_step"] is None  # sync counting needs CUDA
    assert "seconds_per_step" in got["heads"]["fp32"] and "needs CUDA" in got["heads"]["bf16"]["skipped"]
    assert got["sampling"]["same_samples_fp32"] is True and got["sampling"]["kv_cache_speedup"] > 0
    cli = got["cli"]
    assert cli["ok"] and [c["command"] for c in cli["commands"]][-1] == "eval reconstruction"
    assert cli["execution"]["precision"] == "fp32" and "PSNR" in cli["reconstruction"]
    summary = got["summary"]
    assert set(summary["steps_seen"]) >= {"env", "tokenizer", "heads", "sampling", "cli", "dp_tests"}
    assert summary["checks"]["CLI run (train, encode, reconstruction eval)"]["ok"] is True
    assert "KV-cached sampling >= 5x uncached at 256 tokens" in summary["checks"]


def test_the_summary_names_a_step_that_wrote_no_json(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    (tmp_path / "sampling.json").write_text(json.dumps({"step": "sampling", "kv_cache_speedup": 7.5,
                                                       "same_samples_fp32": True}))
    gpu_check.step_summary(tmp_path, dry=False)
    checks = json.loads((tmp_path / "summary.json").read_text())["checks"]
    assert checks["KV-cached sampling >= 5x uncached at 256 tokens"] == {"value": 7.5, "ok": True}
    assert checks["tokenizer step >= 2x fp32 eager"]["ok"] is False
    assert "tokenizer.log" in checks["tokenizer step >= 2x fp32 eager"]["why"]
