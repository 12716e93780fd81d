"""The smoke DAG on a fixture-backed real-data config: the embedded images re-written in the
official MS-COCO 2014 + COCO-QA + RefCOCOg layout and read through the `coco` adapter, with
FID turned off (no offline extractor exists for real images), end to end to the tables."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from lgvq.data.coco_layout import export_coco2014
from lgvq.data.registry import get_source
from lgvq.data.synth import generate
from test_smoke_dag import ROOT, snakemake


def coco_fixture(tmp_path: Path) -> Path:
    return export_coco2014(generate(tmp_path / "shapes", n=60, size=16, seed=0), tmp_path / "coco")


def test_export_is_read_back_by_the_coco_adapter_with_all_three_annotation_sets(tmp_path):
    shapes = generate(tmp_path / "shapes", n=60, size=16, seed=0)
    src = get_source("coco", export_coco2014(shapes, tmp_path / "coco"))
    embedded = get_source("shapes", shapes)
    assert [r.image_id for r in src.records("train")] == [r.image_id for r in embedded.records("train")]
    assert [r.captions for r in src.records("test")] == [r.captions for r in embedded.records("test")]
    assert src.records("test")[0].path.name.startswith("COCO_val2014_0000")
    assert [(q.question, q.answer) for q in src.qa("test")] == [(q.question, q.answer) for q in embedded.qa("test")]
    train_ids = {r.image_id for r in src.records("train")}
    refs = [r for s in ("train", "val", "test") for r in src.refs(s)]
    assert refs and {r.image_id for r in refs} <= train_ids  # RefCOCOg: train2014 images only
    assert not {r.image_id for r in src.refs("train")} & {r.image_id for r in src.refs("test")}  # split by image


@pytest.mark.slow
def test_smoke_dag_runs_on_the_coco_layout_end_to_end(tmp_path):
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    cfg["datasets"] = {"coco": {"source": "coco", "root": str(coco_fixture(tmp_path)), "image_size": 16,
                                "eval_images": 6, "paper_column": "MS-COCO",
                                # no label maps in COCO: semantic synthesis is CelebA-HQ's task
                                "stage2_tasks": ["unconditional", "completion", "t2i_diffusion", "t2i_ar"]}}
    cfg["tokenizers"] = {"vqgan": cfg["tokenizers"]["vqgan"]}
    cfg["ablation"] = {"tokenizer": None}
    cfg["eval"] = {"fid_extractor": "none"}
    config = tmp_path / "coco_smoke.yaml"
    config.write_text(yaml.safe_dump(cfg))

    out = snakemake(tmp_path / "run", "--cores", "2", "results/tables", "results/report.html", configfile=str(config))
    assert out.returncode == 0, (out.stdout[-4000:] + out.stderr[-4000:])
    tables = tmp_path / "run" / "results" / "tables"

    def ours(table: str) -> list[dict]:
        return [r for r in csv.DictReader((tables / f"{table}.csv").open()) if r["ours_mean"] not in ("", "nan")]

    recon = ours("reconstruction")
    assert {(r["variant"], r["metric"]) for r in recon} >= {("base", "PSNR"), ("lg", "PSNR"), ("base", "SSIM")}
    assert all(r["dataset"] == "MS-COCO" for r in recon)
    fid = [r for r in csv.DictReader((tables / "reconstruction.csv").open())
           if r["dataset"] == "MS-COCO" and r["metric"].startswith("FID") and r["tokenizer"] == "vqgan"]
    assert fid and all(r["status"] == "not computed" and "fid_extractor" in r["note"] for r in fid)
    references = {"vqa": {"baseline:majority-per-type", "baseline:blind-head"},
                  "grounding": {"baseline:mean-box", "baseline:text-only-head"},
                  "captioning": {"baseline:most-frequent-caption"}}
    for table, expected in references.items():  # the heads read COCO-QA / RefCOCOg / COCO captions
        rows = ours(table)
        assert {r["variant"] for r in rows if r["row_kind"] == "model"} == {"base", "lg"}, table
        assert {r["variant"] for r in rows if r["row_kind"] != "model"} == expected, table
    assert "lg" in {r["variant"] for r in ours("masked_word")}  # masked words need the LG module
    for table in ("unconditional", "completion", "text_to_image"):  # generated, decoded, no FID: said so
        rows = list(csv.DictReader((tables / f"{table}.csv").open()))
        assert any(r["status"] == "not computed" and r["tokenizer"] == "vqgan" for r in rows), table
    samples = tmp_path / "run" / "results" / "coco" / "eval" / "stage2-unconditional" / "vqgan" / "lg" / "seed0"
    assert (samples / "samples_grid.png").is_file()


def _coco_and_shapes(tmp_path: Path, **coco) -> dict:
    """The smoke config with a COCO-layout dataset beside the embedded one, stage-2 tasks left at the default."""
    from test_adapters import make_coco

    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    cfg["datasets"]["coco"] = {"source": "coco", "root": str(make_coco(tmp_path / "coco")), "image_size": 16,
                               "eval_images": 2, **coco}
    cfg["tokenizers"] = {"vqgan": cfg["tokenizers"]["vqgan"]}
    cfg["ablation"] = {"tokenizer": None}
    return cfg


def test_a_source_without_label_maps_leaves_semantic_synthesis_out_of_its_default_tasks(tmp_path):
    from lgvq.config import validate_config
    from lgvq.pipeline import jobs, plan
    from lgvq.pipeline.preflight import problems

    cfg = validate_config(_coco_and_shapes(tmp_path))
    assert "semantic" in cfg["stage2"]["tasks"] and cfg["datasets"]["coco"]["stage2_tasks"] is None
    assert {r.dataset for r in plan.task_runs(cfg, "stage2", "semantic")} == {"shapes"}  # shapes draws masks
    assert {r.dataset for r in plan.task_runs(cfg, "stage2", "completion")} == {"shapes", "coco"}
    assert {m.run.dataset for m in plan.model_inputs(cfg, "semantic_synthesis")} == {"shapes"}
    (note,) = plan.left_out_tasks(cfg)
    assert "semantic synthesis needs label maps" in note and "datasets.coco" in note
    assert problems(cfg) == []  # left out by default: nothing to refuse
    assert jobs.labelmap_vq(cfg, "shapes")  # the embedded dataset's conditioning stage is planned as before
    # named explicitly, the task is kept and the run refused before any job, naming the key
    cfg = validate_config(_coco_and_shapes(tmp_path / "explicit", stage2_tasks=["unconditional", "semantic"]))
    assert plan.left_out_tasks(cfg) == []
    assert any(p.startswith("datasets.coco.stage2_tasks: 'semantic' needs label maps") for p in problems(cfg))


def test_coco_dry_run_with_default_stage2_tasks_plans_no_semantic_synthesis_and_says_so_once(tmp_path):
    config = tmp_path / "coco_default_tasks.yaml"
    config.write_text(yaml.safe_dump(_coco_and_shapes(tmp_path)))
    out = snakemake(tmp_path / "run", "-n", "--cores", "1", "results/tables", configfile=str(config))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "dataset=coco" in out.stdout and "s2task=completion" in out.stdout
    planned = [ln for ln in out.stdout.splitlines() if "wildcards:" in ln and "dataset=coco" in ln]
    assert planned and not [ln for ln in planned if "s2task=semantic" in ln]
    assert "results/coco/labelmap_vq/model.pt" not in out.stdout and "results/shapes/labelmap_vq/model.pt" in out.stdout
    assert (out.stdout + out.stderr).count("semantic synthesis needs label maps") == 1
    assert "s2task=semantic" in out.stdout  # the embedded dataset keeps it: only the source without maps loses it
