"""`lgvq plan estimate`: the DAG's own job list priced with measured FLOPs, assumptions printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lgvq.config import load_config, validate_config
from lgvq.io import ArtifactError
from lgvq.pipeline import plan
from lgvq.pipeline.estimate import DEFAULT_BENCHMARK, estimate, render

ROOT = Path(__file__).resolve().parent.parent


def test_paper_profile_prices_every_training_job_of_its_dag():
    cfg = load_config(ROOT / "config" / "paper.yaml")
    rows = estimate(cfg)
    tok = [r for r in rows if r.kind.startswith("tokenizer")]
    assert sum(r.jobs for r in tok) == len(list(plan.tokenizer_runs(cfg)))
    for stage, task in (("stage2", "semantic"), ("downstream", "vqa")):
        row = next(r for r in rows if r.kind == f"{stage} {task}")
        assert row.jobs == len(plan.task_runs(cfg, stage, task)) and row.steps == cfg[stage]["steps"]
    text = render(rows, peak_flops=989e12, mfu=0.3, source="config/paper.yaml")
    assert "MFU 0.3" in text and "assumption" in text and "total:" in text


def test_cost_scales_with_steps_batch_and_processes():
    cfg = load_config(ROOT / "config" / "paper.yaml")
    base = {r.kind: r for r in estimate(cfg)}
    cfg["train"]["steps"] *= 2
    cfg["stage2"]["gpus"] = 4  # batch_size is per process: the global batch is 4x
    more = {r.kind: r for r in estimate(cfg)}
    k = "tokenizer vqgan (256 px)"
    assert more[k].flops_per_job == pytest.approx(2 * base[k].flops_per_job)
    assert more["stage2 completion"].flops_per_job == pytest.approx(4 * base["stage2 completion"].flops_per_job)
    assert base[k].hours(989e12, 0.3) == pytest.approx(2 * base[k].hours(989e12, 0.6))


def test_tokenizer_flops_are_the_benchmarks_per_image_count(tmp_path):
    bench = tmp_path / "b.json"
    bench.write_text(json.dumps({"results": [{"class": "vqgan", "image_size": 32, "batch": 4, "flops_per_step": 4e9}]}))
    cfg = validate_config({"datasets": {"shapes": {"source": "shapes", "image_size": 32}},
                           "tokenizers": {"vqgan": {"class": "vqgan"}}, "train": {"steps": 10, "batch_size": 8}})
    (row,) = [r for r in estimate(cfg, bench) if r.kind.startswith("tokenizer")]
    assert row.jobs == 2 and row.flops_per_job == pytest.approx(10 * 8 * 1e9)  # 1 GFLOP per image-step


def test_missing_benchmark_or_unmeasured_tokenizer_is_named(tmp_path):
    cfg = load_config(ROOT / "config" / "paper.yaml")
    with pytest.raises(ArtifactError, match="nowhere.json"):
        estimate(cfg, tmp_path / "nowhere.json")
    cfg["tokenizers"]["vqgan"]["class"] = "fsq"
    with pytest.raises(ArtifactError, match="'fsq'"):
        estimate(cfg, DEFAULT_BENCHMARK)
