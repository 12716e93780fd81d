"""Pre-emption (issue 20, item 5): a SLURM time-limit warning (SIGUSR1, or the profile's SIGTERM)
makes a real training job write a checkpoint at the next step boundary and exit with 128 + the
signal number; the same command run again (a requeue, Snakemake's --retries) ends with the weights
of an uninterrupted run. Covers a tokenizer and a second-stage job (the label-map VQ), whose
checkpoint cadence is `stage2.ckpt_every`, no longer half the steps."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from lgvq.cli import main

ROOT = Path(__file__).resolve().parent.parent
STEPS = 40


def lgvq() -> list[str]:
    exe = Path(sys.executable).parent / "lgvq"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "lgvq"]


def config(tmp: Path, name: str) -> Path:
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    cfg.update(results_dir=str(tmp / name / "r"), tokenizers={"vqvae": cfg["tokenizers"]["vqvae"]},
               ablation={"tokenizer": None}, dose_response={"enabled": False}, references={"enabled": False})
    cfg["train"].update(steps=STEPS, ckpt_every=2)
    cfg["stage2"].update(steps=STEPS, ckpt_every=2)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["data", "prepare", "--config", str(path), "--dataset", "shapes"]) == 0
    return path


def signal_at_first_checkpoint(cmd: list[str], checkpoint: Path, signum: int) -> tuple[int, str]:
    """Run `cmd`, send `signum` once its first checkpoint exists (it is mid-training then), wait."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out + err


def weights(path: Path) -> dict[str, torch.Tensor]:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    found = {}

    def walk(prefix, obj):
        if isinstance(obj, torch.Tensor):
            found[prefix] = obj
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}/{k}", v)

    walk("", payload)
    return found


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa and wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


JOBS = {
    "tokenizer": (["tokenizer", "train", "--dataset", "shapes", "--tokenizer", "vqvae", "--variant", "base",
                   "--seed", "0"], "shapes/tokenizers/vqvae/base/seed0"),
    "labelmap_vq": (["stage2", "labelmap-vq", "--dataset", "shapes"], "shapes/labelmap_vq"),
}


@pytest.mark.slow
@pytest.mark.parametrize("job,signum", [("tokenizer", signal.SIGUSR1), ("labelmap_vq", signal.SIGUSR1)])
def test_a_signalled_training_job_checkpoints_exits_128_plus_the_signal_and_resumes_exactly(tmp_path, job, signum):
    args, rel = JOBS[job]
    cut, ref = config(tmp_path, "cut"), config(tmp_path, "ref")
    cut_dir, ref_dir = tmp_path / "cut" / "r" / rel, tmp_path / "ref" / "r" / rel

    rc, log = signal_at_first_checkpoint([*lgvq(), *args, "--config", str(cut), "--threads", "1"],
                                         cut_dir / "checkpoint.pt", signum)
    assert rc == 128 + signum, log[-3000:]
    m = re.search(rf"interrupted by {signal.Signals(signum).name} at step (\d+)", log)
    assert m, log[-3000:]
    # signalled right after the step-2 checkpoint: it stops well before the end, and (for the label-map VQ)
    # before the old cadence of half the steps would have written its first checkpoint
    assert 2 <= int(m.group(1)) < STEPS // 2
    assert not (cut_dir / "model.pt").exists()

    resumed = subprocess.run([*lgvq(), *args, "--config", str(cut), "--threads", "1"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {cut_dir / 'checkpoint.pt'} at step {m.group(1)}" in resumed.stdout + resumed.stderr
    reference = subprocess.run([*lgvq(), *args, "--config", str(ref), "--threads", "1"], capture_output=True, text=True)
    assert reference.returncode == 0, reference.stderr[-3000:]
    assert_same_weights(ref_dir / "model.pt", cut_dir / "model.pt")
    assert (ref_dir / "log.csv").read_text() == (cut_dir / "log.csv").read_text()


@pytest.mark.slow
def test_a_signalled_understanding_head_checkpoints_every_ckpt_every_and_resumes_exactly(tmp_path):
    """The head job (VQA on frozen codes): SIGUSR1 at its first checkpoint (`downstream.ckpt_every`: 2), the
    re-run resumes; a second, uninterrupted run of the same command from scratch gives the same head."""
    path = config(tmp_path, "head")
    cfg = yaml.safe_load(path.read_text())
    cfg["train"]["steps"] = 2
    cfg["downstream"].update(steps=STEPS, ckpt_every=2)
    path.write_text(yaml.safe_dump(cfg))
    run = ["--config", str(path), "--dataset", "shapes", "--tokenizer", "vqvae", "--variant", "base", "--seed", "0"]
    assert main(["tokenizer", "train", *run]) == 0 and main(["tokenizer", "encode", *run]) == 0
    results = Path(cfg["results_dir"]) / "shapes"
    work = results / "downstream" / "vqa" / "vqvae" / "base" / "seed0"
    assert not work.exists()
    cmd = [*lgvq(), "downstream", "run", "--task", "vqa", *run, "--threads", "1"]

    rc, log = signal_at_first_checkpoint(cmd, work / "checkpoint.pt", signal.SIGUSR1)
    assert rc == 128 + signal.SIGUSR1, log[-3000:]
    m = re.search(r"interrupted by SIGUSR1 at step (\d+)", log)
    assert m and 2 <= int(m.group(1)) < STEPS // 2, log[-3000:]
    resumed = subprocess.run(cmd, capture_output=True, text=True)
    assert resumed.returncode == 0 and f"at step {m.group(1)} of {STEPS}" in resumed.stdout + resumed.stderr
    interrupted = weights(work / "checkpoint.pt")
    os.replace(work, tmp_path / "interrupted")
    assert main(["downstream", "run", "--task", "vqa", *run, "--threads", "1"]) == 0
    reference = weights(work / "checkpoint.pt")
    assert interrupted.keys() == reference.keys()
    for k in reference:
        assert torch.equal(interrupted[k], reference[k]), k
