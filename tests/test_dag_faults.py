"""DAG-level fault catalogue (issue 17): what users do between runs never gives a silently wrong
number and never throws work away.

One tiny DAG (one tokenizer, base and +LG, every stage) runs to completion once per module; while
it trains, a dry run with another config is made (scenario 1). Each other scenario works on its
own copy of the finished directory (results and Snakemake's metadata, file times kept):

- a config key changes -> exactly the jobs docs/config_changes.md lists rerun (Snakemake's own dry run);
- one hyperparameter changes and the real rerun succeeds, no manual delete; changed back, it
  resumes the first config's checkpoint;
- a wrong dataset root stops the run before anything is deleted; `lgvq doctor` says so (exit 1);
- SIGINT mid-training (a Ctrl-C), then the same command again: it resumes and finishes;
- a failing job's `lgvq: error:` line is on the console;
- a frozen checkpoint with two seeds is evaluated once and shown as n=1.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TINY = {"ch": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "z_channels": 8, "embed_dim": 8,
        "n_embed": 16}
CONFIG = {
    "name": "faults",
    "results_dir": "results",
    "seeds": [0],
    "expensive_seeds": [0],
    "datasets": {"shapes": {"source": "shapes", "synth": {"n": 40, "size": 16, "seed": 0}, "image_size": 16,
                            "eval_images": 4}},
    "text_encoder": {"name": "minilm", "max_length": 30},
    "tokenizers": {"vqvae": {"class": "vqvae", "variants": ["base", "lg"], "params": dict(TINY)}},
    # enough steps that the dry run of scenario 1 lands while the tokenizers train
    "train": {"steps": 40, "batch_size": 4, "lr": 0.0002, "ckpt_every": 5, "log_every": 1},
    "eval": {"shapes_cnn_epochs": 1},
    "stage2": {"enabled": True, "tasks": ["completion"], "steps": 2, "batch_size": 4, "width": 16, "layers": 1,
               "heads": 2},
    "downstream": {"enabled": True, "tasks": ["vqa"], "steps": 2, "batch_size": 4, "width": 16, "layers": 1,
                   "heads": 2, "max_words": 8},
    # x0 and x1 are the base and +LG runs above: the dose-response adds only its table until a multiplier is added
    "dose_response": {"enabled": True, "tokenizer": "vqvae", "multipliers": [1]},
}
ALWAYS = {"tables", "table", "dose_response_table", "report", "all"}  # cheap, and they print the whole config: rebuilt on any change
pytestmark = pytest.mark.slow


def env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}


def write_config(workdir: Path, cfg: dict, name: str = "config.yaml") -> Path:
    path = workdir / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def command(workdir: Path, config: Path, *args: str) -> list[str]:
    # The user's command: no --rerun-incomplete or other flags; profiles/default is found by Snakemake.
    return [str(BIN / "snakemake"), *args, "--cores", "2", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(config)]


def snakemake(workdir: Path, config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(command(workdir, config, *args), env=env(), capture_output=True, text=True, cwd=ROOT)


def planned(workdir: Path, cfg: dict) -> dict[str, int]:
    """Rule -> number of jobs a dry run of `cfg` plans in `workdir` (Snakemake's own decision)."""
    out = snakemake(workdir, write_config(workdir, cfg, "dry.yaml"), "-n")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    if "Nothing to be done" in out.stdout + out.stderr:
        return {}
    stats = (out.stdout + out.stderr).split("Job stats:", 1)[1].split("total", 1)[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^([a-z_0-9]+)\s+(\d+)\s*$", stats, re.M)}


def snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()
            and ".config" not in p.parts}


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)  # copy2: file times kept, so Snakemake sees the same state
    return dst


def tokdir(workdir: Path, variant: str = "base") -> Path:
    return workdir / "results" / "shapes" / "tokenizers" / "vqvae" / variant / "seed0"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The tiny DAG, run to completion; scenario 1 happens during the run."""
    work = tmp_path_factory.mktemp("finished")
    config_a = write_config(work, CONFIG, "a.yaml")
    run_a = subprocess.Popen(command(work, config_a), env=env(), cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    train_logs = work / "results" / "logs" / "train_tokenizer"
    deadline = time.time() + 300
    while not any(train_logs.glob("*.log")) and run_a.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    # Run A is training. A dry run of config B, which differs in the number of evaluation images:
    other = copy.deepcopy(CONFIG)
    other["datasets"]["shapes"]["eval_images"] = 2
    dry_b = snakemake(work, write_config(work, other, "b.yaml"), "-n")
    during = run_a.poll() is None  # the dry run finished while A was still running
    log, _ = run_a.communicate(timeout=900)
    assert run_a.returncode == 0, log[-4000:]
    return {"dir": work, "dry_b": dry_b, "dry_b_during_run": during, "config_a": config_a}


def test_a_dry_run_with_another_config_during_a_run_changes_nothing_that_run_computes(finished):
    work = finished["dir"]
    assert finished["dry_b"].returncode == 0 and finished["dry_b_during_run"]
    metrics = json.loads((work / "results/shapes/eval/reconstruction/vqvae/base/seed0/metrics.json").read_text())
    assert "mean over 4 test images" in metrics["notes"]["PSNR"]  # A's eval_images, not B's 2
    manifest = json.loads((work / "results/shapes/eval/reconstruction/vqvae/base/seed0/manifest.json").read_text())
    assert manifest["config"]["fid"]["eval_images"] == 4
    # A's own config finds everything up to date; B's plans exactly its evaluations
    assert planned(work, CONFIG) == {}
    other = copy.deepcopy(CONFIG)
    other["datasets"]["shapes"]["eval_images"] = 2
    assert set(planned(work, other)) - ALWAYS == {"eval_reconstruction", "stage2", "reference_real_vs_real",
                                                  "reference_one_code", "reference_shuffled_codes",
                                                  "reference_decoded_codes"}


def _set(cfg: dict, key: str, value) -> dict:
    cfg = copy.deepcopy(cfg)
    *parents, leaf = key.split(".")
    node = cfg
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    return cfg


# One example change per documented key (docs/config_changes.md lists the jobs each reruns).
CHANGES = {
    "name": "renamed",
    "device": "cpu",
    "datasets.shapes.synth.n": 50,
    "datasets.shapes.image_size": 8,
    "datasets.shapes.eval_images": 2,
    "datasets.shapes.paper_column": "CUB-200",
    "datasets.shapes.jpeg_draft": True,
    "datasets.shapes.lg_weights.gsa": 0.5,
    "text_encoder.max_length": 16,
    "tokenizers.vqvae.params.n_embed": 32,
    "lg.layers": 1,
    "lg.mtp_input": "leak_free",
    "train.steps": 41,
    "data.loader_workers": 1,
    "train.ckpt_every": 7,
    "train.log_every": 2,
    "train.fast_path": False,
    "train.compile": True,
    "train.cpu_bf16": "on",
    "eval.fid_extractor": "none",
    "eval.shapes_cnn_epochs": 2,
    "eval.shapes_cnn_images": 40,
    "eval.mask_eval_seed": 1,
    "stage2.steps": 3,
    "stage2.fast_path": False,
    "stage2.cpu_bf16": "on",
    "stage2.tokenizers.completion": ["vqvae"],
    "stage2.labelmap_ch": 8,
    "downstream.steps": 3,
    "downstream.fast_path": False,
    "downstream.cpu_bf16": "on",
    "downstream.tokenizers.vqa": ["vqvae"],
    "downstream.grounding_head": "transvg",
    "downstream.codebook_norm": "none",
    "downstream.frontend_conv": 1,
    "downstream.per_task.vqa.steps": 5,
    "train.val_every": 7,
    "train.val_items": 3,
    "train.val_max_points": 1,
    "stage2.val_every": 7,
    "stage2.val_items": 3,
    "stage2.val_max_points": 1,
    "downstream.val_every": 7,
    "downstream.val_items": 3,
    "downstream.val_max_points": 1,
    "dose_response.multipliers": [1, 10],
    "dose_response.vqa": False,
    "references.enabled": False,
    "references.budget_note": "see config/medium.yaml",
}


def documented_reruns() -> dict[str, set[str]]:
    """The table of docs/config_changes.md: key -> rules that rerun."""
    rows = {}
    for line in (ROOT / "docs" / "config_changes.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("`") and not cells[0].startswith("`key"):
            rules = set(re.findall(r"`([a-z_0-9]+)`", cells[1]))
            for key in re.findall(r"`([^`]+)`", cells[0]):  # a row may list several keys
                rows[key] = rules
    return rows


def test_each_config_key_reruns_exactly_the_jobs_the_docs_list(finished):
    docs = documented_reruns()
    assert set(docs) == set(CHANGES), "docs/config_changes.md and this test list different keys"
    got = {key: set(planned(finished["dir"], _set(CONFIG, key, value))) - ALWAYS for key, value in CHANGES.items()}
    wrong = {key: (sorted(got[key]), sorted(docs[key])) for key in CHANGES if got[key] != docs[key]}
    assert not wrong, f"key: (planned by Snakemake, documented): {wrong}"


def test_a_setting_of_the_lg_module_leaves_the_base_tokenizer_alone(finished):
    out = snakemake(finished["dir"], write_config(finished["dir"], _set(CONFIG, "lg.layers", 1), "lg.yaml"), "-n")
    assert "variant=lg" in out.stdout and "variant=base" not in out.stdout


def test_a_changed_hyperparameter_reruns_without_a_manual_delete_and_keeps_the_old_checkpoint(finished, tmp_path):
    work = copy_run(finished["dir"], tmp_path / "w")
    old = {v: (tokdir(work, v) / "checkpoint.pt").read_bytes() for v in ("base", "lg")}
    changed = write_config(work, _set(CONFIG, "tokenizers.vqvae.params.n_embed", 32), "n64.yaml")
    out = snakemake(work, changed)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for v in ("base", "lg"):
        kept = list((tokdir(work, v) / "superseded").glob("*/checkpoint.pt"))
        assert len(kept) == 1 and kept[0].read_bytes() == old[v]  # set aside byte for byte, not resumed
    assert planned(work, _set(CONFIG, "tokenizers.vqvae.params.n_embed", 32)) == {}
    # back to the first config: its checkpoints come back and nothing is trained again
    out = snakemake(work, finished["config_a"])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    log = (work / "results/logs/train_tokenizer/shapes-vqvae-base-0.log").read_text()
    assert "resuming this config's checkpoint" in log
    assert (tokdir(work) / "checkpoint.pt").read_bytes() == old["base"]  # restored, and not trained further


def test_a_wrong_dataset_root_stops_the_run_before_anything_is_deleted(finished, tmp_path):
    work = copy_run(finished["dir"], tmp_path / "w")
    before = snapshot(work / "results")
    bad = write_config(work, _set(CONFIG, "datasets.shapes.root", str(tmp_path / "nonexistent")), "bad.yaml")
    message = f"datasets.shapes.root: directory not found: {tmp_path / 'nonexistent'}"
    dry = snakemake(work, bad, "-n")  # a dry run deletes nothing: it plans, and warns that the real run will stop
    assert "a real run of this config stops before its first job" in dry.stderr and message in dry.stderr
    out = snakemake(work, bad)
    assert out.returncode != 0 and message in out.stdout + out.stderr
    assert snapshot(work / "results") == before  # no output deleted or rewritten
    doctor = subprocess.run([str(BIN / "lgvq"), "doctor", "--config", str(bad)], env=env(), capture_output=True,
                            text=True)
    assert doctor.returncode == 1 and "datasets.shapes.root: directory not found" in doctor.stdout
    assert planned(work, CONFIG) == {}  # with the right config restored, nothing reruns


def test_sigint_mid_training_then_the_same_command_resumes_and_finishes(finished, tmp_path):
    work = copy_run(finished["dir"], tmp_path / "w")
    longer = write_config(work, _set(CONFIG, "train.steps", 400), "long.yaml")
    run = subprocess.Popen(command(work, longer), env=env(), cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    log_file = work / "results/logs/train_tokenizer/shapes-vqvae-base-0.log"
    deadline = time.time() + 300
    while time.time() < deadline and run.poll() is None:
        if log_file.is_file() and re.search(r"\b([2-9]\d|\d{3})/400\b", log_file.read_text()):
            break  # 20+ steps of the 400 done, past the first checkpoints
        time.sleep(0.2)
    os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
    run.communicate(timeout=300)
    assert run.returncode != 0
    job_log = log_file.read_text()
    assert "interrupted by SIGINT at step" in job_log and "Traceback" not in job_log, job_log[-2000:]
    step = int(re.search(r"interrupted by SIGINT at step (\d+)", job_log).group(1))
    assert 0 < step < 400
    out = snakemake(work, longer)  # the same command, no extra flag
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"at step {step} of 400" in log_file.read_text()  # "lgvq: resuming <checkpoint> at step N of 400"


def test_a_failed_jobs_error_line_is_on_the_console(finished, tmp_path):
    work = copy_run(finished["dir"], tmp_path / "w")
    not_a_checkpoint = work / "notes.txt"
    not_a_checkpoint.write_text("this is not a checkpoint\n")
    cfg = _set(_set(CONFIG, "tokenizers.vqvae.checkpoint", str(not_a_checkpoint)), "tokenizers.vqvae.variants", ["base"])
    cfg["dose_response"]["enabled"] = False  # a frozen checkpoint has no LG weight to scale
    out = snakemake(work, write_config(work, cfg, "frozen.yaml"))
    assert out.returncode != 0
    console = out.stdout + out.stderr
    assert f"lgvq: error: tokenizers.vqvae.checkpoint: {not_a_checkpoint} is not a PyTorch checkpoint" in console
    assert "weights_only" not in console


def test_a_frozen_checkpoint_is_evaluated_once_and_shown_with_n_1(finished, tmp_path):
    work = copy_run(finished["dir"], tmp_path / "w")
    frozen = work / "frozen.pt"  # outside the run's directory: Snakemake replaces the run's own model.pt
    shutil.copy(tokdir(work) / "model.pt", frozen)
    cfg = _set(_set(CONFIG, "tokenizers.vqvae.checkpoint", str(frozen)), "tokenizers.vqvae.variants", ["base"])
    cfg = {**cfg, "seeds": [0, 1], "expensive_seeds": [0, 1], "stage2": {"enabled": False},
           "downstream": {"enabled": False}, "dose_response": {"enabled": False}}
    out = snakemake(work, write_config(work, cfg, "frozen.yaml"), "results/tables/reconstruction.md")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "seed=1" not in out.stdout + out.stderr
    table = (work / "results/tables/reconstruction.md").read_text()
    assert "(n=1)" in table and "± 0.00" not in table


def test_an_unknown_tokenizer_class_is_named_before_any_job_runs(tmp_path):
    cfg = _set(CONFIG, "tokenizers.vqvae.class", "vqvea")
    path = write_config(tmp_path, cfg)
    dry = snakemake(tmp_path, path, "-n")
    assert "tokenizers.vqvae.class: unknown tokenizer 'vqvea'" in dry.stderr  # the dry run warns
    out = snakemake(tmp_path, path)
    assert out.returncode != 0 and "tokenizers.vqvae.class: unknown tokenizer 'vqvea'" in out.stdout + out.stderr
    assert not (tmp_path / "results" / "logs").exists()  # no job started
