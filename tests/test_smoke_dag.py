"""End to end: the smoke DAG from nothing to the paper's tables, through Snakemake."""

from __future__ import annotations

import csv
import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def snakemake(workdir: Path, *args: str, configfile: str = "config/smoke.yaml") -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    # targets first: --configfile and --config take several values and would swallow them
    cmd = [str(BIN / "snakemake"), *args, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(ROOT / configfile), "--config", "results_dir=results"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)


@pytest.mark.parametrize("configfile", ["config/config.yaml", "config/paper.yaml", "config/medium.yaml", "config/full.yaml"])
def test_dry_run_plans_every_table(tmp_path, configfile):
    out = snakemake(tmp_path, "-n", "--cores", "1", "results/tables", configfile=configfile)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "train_tokenizer" in out.stdout and "tables" in out.stdout
    if configfile.endswith("paper.yaml"):  # --configfile replaces the default experiment, never merges into it
        assert "dataset=shapes" not in out.stdout and "dataset=celebahq" in out.stdout


def test_jobs_with_several_gpus_are_launched_by_torchrun(tmp_path):
    import yaml

    cfg = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    for stage in ("train", "stage2", "downstream"):
        cfg[stage]["gpus"] = 2
    path = tmp_path / "gpus.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = snakemake(tmp_path, "-n", "-p", "--cores", "1", "results/tables", configfile=str(path))
    assert out.returncode == 0, out.stderr[-3000:]
    launch = "torchrun --standalone --nproc_per_node 2 -m lgvq.cli"
    for verb in ("tokenizer train", "stage2 run", "downstream run"):
        assert f"{launch} {verb}" in out.stdout, verb
    assert f"{launch} tokenizer encode" not in out.stdout  # only training is data parallel


def test_bad_config_is_refused_naming_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "config/smoke.yaml").read_text().replace("steps: 4", "steps: -4"))
    out = snakemake(tmp_path, "-n", "--cores", "1", configfile=str(bad))
    assert out.returncode != 0
    assert "train.steps" in out.stdout + out.stderr


@pytest.mark.slow
def test_smoke_dag_builds_all_tables_and_one_table_alone(tmp_path):
    out = snakemake(tmp_path, "--cores", "2", "results/tables", "results/report.html")
    assert out.returncode == 0, (out.stdout[-4000:] + out.stderr[-4000:])
    tables = tmp_path / "results" / "tables"
    for table in ("reconstruction", "codebook_usage", "ablation", "masked_word", "word_code_similarity",
                  "dataset_stats"):
        for ext in ("md", "csv", "tex"):
            assert (tables / f"{table}.{ext}").is_file(), f"{table}.{ext} missing"
    rows = list(csv.DictReader((tables / "reconstruction.csv").open()))
    ours = [r for r in rows if r.get("ours_mean") not in (None, "", "nan")]
    assert ours, "reconstruction.csv has no number of ours"
    assert any("FID[shapes-cnn]" in r.get("metric", "") for r in ours)
    for table in ("captioning", "vqa", "grounding"):  # understanding heads: every tokenizer, base and +LG
        rows = [r for r in csv.DictReader((tables / f"{table}.csv").open())
                if r["ours_mean"] not in ("", "nan") and r["row_kind"] == "model"]
        assert {(r["tokenizer"], r["variant"]) for r in rows} == {(t, v) for t in ("vqvae", "vqgan", "cvq", "vqct", "fsq")
                                                                  for v in ("base", "lg")}, table
    for table in ("text_to_image", "semantic_synthesis", "unconditional", "completion"):  # second stage
        rows = [r for r in csv.DictReader((tables / f"{table}.csv").open()) if r["ours_mean"] not in ("", "nan")]
        assert {(r["tokenizer"], r["variant"]) for r in rows} >= {("vqgan", "base"), ("vqgan", "lg"), ("fsq", "lg")}, table
        assert any(r["metric"] == "FID[shapes-cnn]" for r in rows), table
    t2i = [r for r in csv.DictReader((tables / "text_to_image.csv").open()) if r["ours_mean"] not in ("", "nan")]
    following = {r["row"]: float(r["ours_mean"]) for r in t2i if r["metric"] == "caption_following[AR-GPT]"}
    assert {"VQ-GAN", "baseline: always-absent", "ceiling: real-images", "ceiling: decoded-codes (vqgan)"} <= set(following)
    assert following["baseline: always-absent"] == 0.0
    # stage2.samples_per_caption: 2 in smoke.yaml: the attribute scores read two draws per caption, the FID and the
    # PNGs one per test condition
    for task in ("t2i_ar", "t2i_diffusion"):
        run = tmp_path / "results" / "shapes" / "eval" / f"stage2-{task}" / "vqgan" / "base" / "seed0"
        notes = json.loads((run / "metrics.json").read_text())["notes"]
        counted = [re.search(r"(\d+) captions x 2 samples each", note) for note in notes.values()]
        n_captions = {int(m.group(1)) for m in counted if m}
        assert len(n_captions) == 1, notes  # the test split's first eval_images captions, each drawn twice
        assert len(list((run / "samples").glob("*.png"))) == n_captions.pop()  # one PNG per caption: round 0
    # every table ends with its baseline/ceiling rows, computed by the DAG (lgvq.pipeline.references)
    references = {"reconstruction": {"ceiling: real-vs-real", "baseline: one-code"},
                  "masked_word": {"baseline: word-prior", "baseline: chance"},
                  "word_code_similarity": {"baseline: random-codebook (vqgan)"},
                  "text_to_image": {"ceiling: real-vs-real", "baseline: shuffled-codes (vqgan)", "baseline: always-absent",
                                    "ceiling: real-images", "ceiling: decoded-codes (vqgan)"},
                  "unconditional": {"ceiling: real-vs-real", "baseline: shuffled-codes (vqgan)",
                                    "ceiling: decoded-codes (vqgan)"},
                  "vqa": {"baseline: majority-per-type", "baseline: blind-head"},
                  "grounding": {"baseline: mean-box", "baseline: text-only-head"},
                  "captioning": {"baseline: most-frequent-caption"}}
    for table, labels in references.items():
        rows = [r for r in csv.DictReader((tables / f"{table}.csv").open()) if r["row_kind"] != "model"]
        assert {r["row"] for r in rows if r["ours_mean"] not in ("", "nan")} == labels, table
        md = (tables / f"{table}.md").read_text()
        for label in labels:
            line = next(x for x in md.splitlines() if x.startswith(f"| {label} |"))
            assert any(c.strip()[:1].isdigit() for c in line.split("|")[2:]), (table, line)  # a number, not a blank row
    assert (tmp_path / "results" / "report.html").stat().st_size > 1000
    manifest = json.loads(next((tmp_path / "results").rglob("tokenizers/*/lg/seed0/manifest.json")).read_text())
    for key in ("config_hash", "git", "versions", "seed", "wall_time_s", "peak_rss_mb"):
        assert key in manifest

    # the README's results section is generated from these tables (scripts/readme_results.py)
    readme_results = runpy.run_path(str(ROOT / "scripts" / "readme_results.py"))
    section = readme_results["section"](tmp_path / "results", "12 min")
    assert "Whole DAG wall time: 12 min." in section and "Precision, from each job's manifest" in section
    assert "**Against the baselines**" in section and "| vqa | " in section  # each table's verdicts (targets.py)
    for table, labels in references.items():
        assert f"**{table}**" in section, table
        for label in labels:
            assert f"| {label} | " in section, (table, label)

    # one table regenerates alone, without retraining anything
    (tables / "ablation.md").unlink()
    again = snakemake(tmp_path, "--cores", "1", "results/tables/ablation.md")
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tables / "ablation.md").is_file()
    assert "train_tokenizer" not in again.stdout + again.stderr
