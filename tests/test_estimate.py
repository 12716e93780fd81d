"""`lgvq plan estimate`: the DAG's own job list priced with measured FLOPs and input throughput, assumptions
printed, a memory column left for a per-rule model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lgvq.config import load_config, validate_config
from lgvq.io import ArtifactError
from lgvq.pipeline import plan
from lgvq.sections import task_section
from lgvq.pipeline.estimate import (DEFAULT_BENCHMARK, INPUT_IMAGES_PER_S, SPLIT_IMAGES, estimate, input_throughput,
                                    render)

ROOT = Path(__file__).resolve().parent.parent


def test_paper_profile_prices_every_training_job_of_its_dag():
    cfg = load_config(ROOT / "config" / "paper.yaml")
    rows = estimate(cfg)
    tok = [r for r in rows if r.kind.startswith("tokenizer")]
    assert sum(r.jobs for r in tok) == len(list(plan.tokenizer_runs(cfg)))
    for stage, task in (("stage2", "semantic"), ("downstream", "vqa")):
        row = next(r for r in rows if r.kind == f"{stage} {task}")
        assert row.jobs == len(plan.task_runs(cfg, stage, task)) and row.steps == task_section(cfg, stage, task)["steps"]
    text = render(rows, peak_flops=989e12, mfu=0.3, source="config/paper.yaml")
    assert "MFU 0.3" in text and "assumption" in text and "total:" in text


def test_paper_profile_prices_the_encode_evaluation_text_cache_and_sampling_jobs_of_its_dag():
    cfg = load_config(ROOT / "config" / "paper.yaml")
    rows = estimate(cfg, input_benchmark=None)

    def jobs(kind: str) -> int:  # one row per dataset
        return sum(r.jobs for r in rows if r.kind.startswith(f"{kind} ("))

    runs = list(plan.tokenizer_runs(cfg))
    assert jobs("encode codes") == jobs("eval reconstruction") == len(runs)
    assert jobs("eval text alignment") == len(plan.main_runs(cfg))
    assert jobs("text cache") == len(cfg["datasets"])
    for task in ("semantic", "t2i_diffusion", "completion"):
        assert jobs(f"stage2 {task} sampling") == len(plan.task_runs(cfg, "stage2", task))
    by = {r.kind: r for r in rows}
    assert by["text cache (coco)"].rule == "text_cache" and by["text cache (coco)"].datasets == ("coco",)
    # the diffusion denoises the whole grid `diffusion_steps` times; CodeGPT's KV cache makes one pass per token
    diffusion, ar = by["stage2 t2i_diffusion sampling (celebahq)"], by["stage2 unconditional sampling (celebahq)"]
    assert diffusion.flops_per_job > ar.flops_per_job
    assert by["stage2 semantic sampling (celebahq)"].images_per_job == 0  # codes and cached features, no images
    # every image of every split is decoded once per encode job, val and test apart
    train, held, _ = SPLIT_IMAGES["coco"]
    encode = by["encode codes (coco)"]
    assert encode.images_per_job == train + 2 * held and not encode.input.overlapped


def test_cost_scales_with_steps_batch_and_processes():
    cfg = load_config(ROOT / "config" / "paper.yaml")
    base = {r.kind: r for r in estimate(cfg)}
    cfg["train"]["steps"] *= 2
    cfg["stage2"]["gpus"] = 4  # batch_size is per process: the global batch is 4x
    more = {r.kind: r for r in estimate(cfg)}
    k = "tokenizer vqgan (256 px)"
    assert more[k].flops_per_job == pytest.approx(2 * base[k].flops_per_job)
    assert more["stage2 completion"].flops_per_job == pytest.approx(4 * base["stage2 completion"].flops_per_job)
    assert base[k].compute_hours(989e12, 0.3) == pytest.approx(2 * base[k].compute_hours(989e12, 0.6))
    assert base[k].input_hours() > 0 and base[k].hours(989e12, 0.6) < base[k].hours(989e12, 0.3)


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


def _shapes_cfg(**train):
    return validate_config({"datasets": {"shapes": {"source": "shapes", "image_size": 32, "synth": {"n": 100},
                                                    "eval_images": 8}},
                            "tokenizers": {"vqgan": {"class": "vqgan", "variants": ["base"]}},
                            "train": {"steps": 10, "batch_size": 8, **train}, "eval": {"fid_extractor": "none"},
                            "stage2": {"enabled": False}, "downstream": {"enabled": False}})


def _bench(tmp_path, size=32, per_image=6e9) -> Path:
    bench = tmp_path / "b.json"
    bench.write_text(json.dumps({"results": [{"class": "vqgan", "image_size": size, "batch": 1,
                                              "flops_per_step": per_image}]}))
    return bench


def test_inference_jobs_follow_the_documented_forward_shares(tmp_path):
    """A training step of one image = 3 forwards; encoding is half of a forward (6 GFLOP step -> 1 GFLOP)."""
    rows = {r.kind: r for r in estimate(_shapes_cfg(), _bench(tmp_path), input_benchmark=None)}
    assert rows["encode codes (shapes)"].flops_per_job == pytest.approx(100 * 1e9)  # synth n=100: 80 + 10 + 10
    assert rows["eval reconstruction (shapes)"].flops_per_job == pytest.approx(8 * 2e9)  # eval_images x enc+dec, no FID
    assert rows["eval text alignment (shapes)"].flops_per_job > (80 + 10) * 1e9  # + the masked captions re-encoded
    assert rows["encode codes (shapes)"].input is None  # the embedded PNGs: input not counted
    assert not any("sampling" in k or k.startswith("stage2") for k in rows)  # stage 2 off: nothing priced


def test_real_images_cost_input_time_assumed_or_measured_and_labelled_so(tmp_path):
    cfg = _shapes_cfg()
    cfg["datasets"]["shapes"]["source"], cfg["datasets"]["shapes"]["root"] = "cub", str(tmp_path)
    (tok,) = [r for r in estimate(cfg, _bench(tmp_path), input_benchmark=tmp_path / "absent.json")
              if r.kind.startswith("tokenizer")]
    assert "assumed" in tok.basis and tok.input.images_per_s == pytest.approx(INPUT_IMAGES_PER_S)
    decode_h = tok.jobs * 10 * 8 / INPUT_IMAGES_PER_S / 3600  # steps x batch, on the training thread
    assert tok.hours(1e12, 0.5) == pytest.approx(tok.compute_hours(1e12, 0.5) + decode_h)
    measured = tmp_path / "input.json"
    measured.write_text(json.dumps({"rows": [{"image_size": 32, "workers": 0, "images_per_s": 50.0},
                                             {"image_size": 32, "workers": 2, "images_per_s": 400.0},
                                             {"image_size": 256, "workers": 2, "images_per_s": 900.0}]}))
    (tok,) = [r for r in estimate(cfg, _bench(tmp_path), input_benchmark=measured) if r.kind.startswith("tokenizer")]
    assert tok.input.images_per_s == 400.0 and tok.input.overlapped  # the fastest row at 32 px, with workers
    assert "measured" in tok.basis and "input.json" in tok.basis
    assert tok.hours(1e12, 0.5) == pytest.approx(max(tok.compute_hours(1e12, 0.5), tok.input_hours()))
    encode = next(r for r in estimate(cfg, _bench(tmp_path), input_benchmark=measured)
                  if r.kind == "encode codes (shapes)")
    assert encode.images_per_job == 5994 + 2 * 5794 and encode.input_hours() == pytest.approx(
        encode.images_per_job / 400.0 / 3600)
    cfg["train"]["gpus"] = 2  # two ranks, each decoding its own batch: twice the device-hours of waiting
    (two,) = [r for r in estimate(cfg, _bench(tmp_path), input_benchmark=measured) if r.kind.startswith("tokenizer")]
    assert two.input_hours() == pytest.approx(2 * tok.input_hours()) and two.images_per_job == tok.images_per_job
    with pytest.raises(ArtifactError, match="input.json has no input-pipeline row at 64 px"):
        input_throughput(measured, 64)
    measured.write_text(json.dumps({"rows": [{"size": "default"}]}))
    with pytest.raises(ArtifactError, match="input.json: not an input-pipeline benchmark"):
        input_throughput(measured, 32)


def test_memory_column_is_a_hook_for_a_per_rule_model(tmp_path):
    cfg = _shapes_cfg()
    asked = []

    def memory(cfg_, rule, dataset, task):
        asked.append((rule, dataset, task))
        return {"train_tokenizer": 4096, "encode_codes": 2048}.get(rule)

    rows = {r.kind: r for r in estimate(cfg, _bench(tmp_path), input_benchmark=None, memory=memory)}
    assert rows["tokenizer vqgan (32 px, embedded data)"].memory_mb == 4096
    assert rows["encode codes (shapes)"].memory_mb == 2048
    assert rows["text cache (shapes)"].memory_mb is None and ("text_cache", "shapes", None) in asked
    text = render(list(rows.values()), peak_flops=1e12, mfu=0.5, source="x")
    assert " 4096 " in text and "mem MB" in text
    plain = estimate(cfg, _bench(tmp_path), input_benchmark=None)
    assert all(r.memory_mb is None for r in plain)


def test_a_dataset_of_unknown_size_is_listed_not_priced(tmp_path):
    cfg = _shapes_cfg()
    cfg["datasets"]["shapes"]["source"] = "my_plugin_source"
    rows = estimate(cfg, _bench(tmp_path), input_benchmark=None)
    (row,) = [r for r in rows if r.kind.startswith("not priced")]
    assert row.datasets == ("shapes",) and "datasets.shapes (source 'my_plugin_source')" in row.basis
    assert not any(r.kind.startswith("encode codes") for r in rows)


def test_plan_estimate_prints_what_each_job_asks_the_cluster_for():
    """The memory column is the per-rule model SLURM jobs request by (lgvq.pipeline.resources), so the
    estimate and the sbatch arguments cannot disagree."""
    import subprocess
    import sys

    from lgvq.pipeline.resources import job_memory_mb, rule_resources

    cfg = load_config(ROOT / "config" / "paper.yaml")
    rows = {r.kind: r for r in estimate(cfg, memory=job_memory_mb)}
    tok = next(r for k, r in rows.items() if k.startswith("tokenizer "))
    assert tok.memory_mb == max(rule_resources(cfg, "train_tokenizer", d)["mem_mb"] for d in tok.datasets) > 0
    cache = rows["text cache (coco)"]
    assert cache.memory_mb == rule_resources(cfg, "text_cache", "coco")["mem_mb"]
    out = subprocess.run([sys.executable, "-m", "lgvq", "plan", "estimate", "--config", str(ROOT / "config" / "paper.yaml")],
                         capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("text cache (coco)"))
    assert f" {cache.memory_mb} " in line and "—" not in line
