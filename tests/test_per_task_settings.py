"""`downstream.per_task`: one task's heads trained their own way (e.g. VQA's heads longer than the others),
without touching another task's jobs. Its entry replaces the shared `downstream` keys for that task's heads,
for the trained baseline that controls for them (the blind or text-only head), for its cluster time limit
and for `lgvq plan estimate`; the other tasks keep their hashes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lgvq.config import ConfigError, load_config, validate_config
from lgvq.data.base import QARecord
from lgvq.pipeline import jobs
from lgvq.pipeline.references import get_reference
from lgvq.pipeline.resources import rule_resources
from lgvq.settings import downstream_settings

ROOT = Path(__file__).resolve().parent.parent


def smoke(per_task: dict | None = None) -> dict:
    cfg = load_config(ROOT / "config" / "smoke.yaml")
    if per_task is not None:
        cfg["downstream"]["per_task"] = per_task
    return cfg


class QASource:
    """A toy dataset source holding question-answer splits only."""

    def __init__(self, qa: dict) -> None:
        self._qa = qa

    def qa(self, split):
        return self._qa[split]


def head_hash(cfg: dict, task: str) -> str:
    return jobs.job_hash(jobs.downstream_job(cfg, task, "shapes", "vqvae", "base", 0))


def reference_hash(cfg: dict, name: str) -> str:
    return jobs.job_hash(jobs.reference(cfg, name, "shapes", None, 0))


def test_a_tasks_entry_replaces_the_shared_settings_for_that_task_only():
    cfg = smoke({"vqa": {"steps": 6000, "frontend_conv": 2}})
    shared = cfg["downstream"]
    vqa, captioning = downstream_settings(cfg, "vqa"), downstream_settings(cfg, "captioning")
    assert (vqa.steps, vqa.frontend_conv) == (6000, 2)
    assert (captioning.steps, captioning.frontend_conv) == (shared["steps"], shared["frontend_conv"])
    assert vqa.width == shared["width"]  # a key the entry does not name stays shared
    assert downstream_settings(cfg).steps == shared["steps"]  # no task: the shared values


def test_a_tasks_entry_reruns_that_tasks_heads_and_its_control_and_nothing_else():
    before = smoke()
    after = smoke({"vqa": {"steps": before["downstream"]["steps"] + 5}})
    assert head_hash(after, "vqa") != head_hash(before, "vqa")
    assert reference_hash(after, "blind-head") != reference_hash(before, "blind-head")
    for task in ("captioning", "grounding"):
        assert head_hash(after, task) == head_hash(before, task)
    assert reference_hash(after, "text-only-head") == reference_hash(before, "text-only-head")
    assert reference_hash(after, "majority-per-type") == reference_hash(before, "majority-per-type")


def test_an_empty_map_or_an_entry_equal_to_the_shared_values_keeps_every_finished_jobs_hash():
    """Configs written before the key existed keep their jobs, and so does an entry that changes nothing."""
    cfg = smoke()
    without_key = smoke()
    del without_key["downstream"]["per_task"]
    same = smoke({"vqa": {"steps": cfg["downstream"]["steps"]}})
    for task in ("vqa", "captioning", "grounding"):
        assert head_hash(cfg, task) == head_hash(without_key, task) == head_hash(same, task)
    assert reference_hash(cfg, "blind-head") == reference_hash(without_key, "blind-head") == reference_hash(same, "blind-head")


@pytest.mark.parametrize("per_task, message", [
    ({"vqq": {"steps": 5}}, r"downstream\.per_task: unknown downstream task\(s\) \['vqq'\]"),
    ({"vqa": {"beam": 3}}, r"downstream\.per_task\.vqa: Additional properties are not allowed \('beam'"),
    ({"vqa": {"steps": 0}}, r"downstream\.per_task\.vqa\.steps: 0 is less than the minimum of 1"),
    ({"vqa": {"codebook_norm": "zscore"}}, r"downstream\.per_task\.vqa\.codebook_norm: 'zscore' is not one of"),
])
def test_a_bad_entry_is_an_error_naming_its_key(per_task, message):
    raw = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    raw.setdefault("downstream", {})["per_task"] = per_task
    with pytest.raises(ConfigError, match=message):
        validate_config(raw, "smoke.yaml")


def test_the_cluster_time_limit_and_the_estimate_follow_the_tasks_steps():
    from lgvq.pipeline.estimate import _head_rows

    cfg = load_config(ROOT / "config" / "paper.yaml")
    steps = cfg["downstream"]["steps"]
    cfg["downstream"]["per_task"] = {"vqa": {"steps": 4 * steps}}
    vqa, grounding = (rule_resources(cfg, "downstream", "coco", task) for task in ("vqa", "grounding"))
    assert vqa["runtime"] > grounding["runtime"]
    assert grounding == rule_resources(cfg, "downstream", "coco")  # no entry: the shared budget
    # the blind head trains as long as VQA's heads, so its job asks for as long (one process, one GPU)
    blind = rule_resources(cfg, "reference_head", "coco", "vqa")
    assert blind["runtime"] == vqa["runtime"] > rule_resources(cfg, "reference_head", "coco", "grounding")["runtime"]
    assert blind["gpus"] == 1
    rows = {r.kind: r for r in _head_rows(cfg)}
    assert rows["downstream vqa"].steps == 4 * steps and rows["downstream grounding"].steps == steps
    assert rows["downstream vqa"].flops_per_job == pytest.approx(4 * rows["downstream grounding"].flops_per_job)


def test_the_estimates_memory_column_prices_a_tasks_own_batch():
    """The paper's grounding heads train at batch 30 where the others train at 60: their jobs ask for less
    memory, and `lgvq plan estimate` prints what they ask for."""
    from lgvq.pipeline.estimate import estimate
    from lgvq.pipeline.resources import job_memory_mb

    cfg = load_config(ROOT / "config" / "paper.yaml")
    assert cfg["downstream"]["per_task"]["grounding"]["batch_size"] < cfg["downstream"]["batch_size"]
    rows = {r.kind: r for r in estimate(cfg, memory=job_memory_mb)}
    grounding, shared = (rule_resources(cfg, "downstream", "coco", task)["mem_mb"] for task in ("grounding", None))
    assert rows["downstream grounding"].memory_mb == grounding < shared
    assert rows["downstream vqa"].memory_mb == rule_resources(cfg, "downstream", "coco", "vqa")["mem_mb"] == shared


def test_the_blind_head_trains_with_the_vqa_entry(monkeypatch, tmp_path):
    """The control must get the budget of the heads it controls for, not the shared one."""
    import lgvq.pipeline.reference_blind as rb

    cfg = smoke({"vqa": {"steps": 3, "frontend_conv": 1}})
    cfg["results_dir"] = str(tmp_path)
    cfg["downstream"].update(steps=1, ckpt_every=1)
    qa = {"train": [QARecord(1, "what shape is it", "circle", 0), QARecord(2, "what shape is it", "square", 0)],
          "test": [QARecord(1, "what shape is it", "circle", 0)]}
    monkeypatch.setattr(rb, "dataset_source", lambda cfg, dataset: QASource(qa))
    measured = rb.blind_head(cfg, get_reference("blind-head"), "shapes", None, 0)["vqa"]
    assert measured.training["steps"] == 3
    assert "1 3x3 conv layers over the code grid, 3 steps" in measured.labels["head"]
