"""Table rendering: the paper's numbers unchanged, ours as mean ± std (n), honest labels."""

from __future__ import annotations

import csv
import math

import pytest

from lgvq.io import ArtifactError
from lgvq.tables.build import build_table, write_table
from lgvq.tables.paper import TABLES


def rec(tok, variant, seed, metrics, kind="reconstruction", dataset="shapes"):
    return {"kind": kind, "dataset": dataset, "tokenizer": tok, "variant": variant, "seed": seed, "metrics": metrics,
            "notes": {"FID[shapes-cnn]": "clean-fid, shapes-cnn, 10 vs 10"}}


RECORDS = [
    rec("vqgan", "base", 0, {"FID[shapes-cnn]": 10.0, "PSNR": 20.0}),
    rec("vqgan", "base", 1, {"FID[shapes-cnn]": 12.0, "PSNR": 22.0}),
    rec("vqgan", "lg", 0, {"FID[shapes-cnn]": 8.0, "PSNR": 21.0}),
    rec("vqgan", "lg", 1, {"FID[shapes-cnn]": 9.0, "PSNR": 21.0}),
    rec("mine", "base", 0, {"FID[shapes-cnn]": 30.0, "PSNR": 15.0}),
]


def cell(df, row, dataset, metric):
    sub = df[(df.row == row) & (df.dataset == dataset) & (df.metric == metric)]
    assert len(sub) == 1, (row, dataset, metric)
    return sub.iloc[0]


def test_mean_std_n_and_delta_vs_base():
    df = build_table("reconstruction", RECORDS, dataset_columns={"shapes": None})
    base = cell(df, "VQ-GAN", "shapes", "FID[shapes-cnn]")
    assert base.ours_mean == 11.0 and base.ours_std == pytest.approx(math.sqrt(2)) and base.n_seeds == 2
    lg = cell(df, "VQ-GAN+LG", "shapes", "FID[shapes-cnn]")
    assert lg.delta_vs_base == pytest.approx(-2.5) and lg.direction == "lower"
    assert cell(df, "VQ-GAN+LG", "shapes", "PSNR").direction == "higher"


def test_paper_numbers_are_the_papers_and_never_ours():
    df = build_table("reconstruction", RECORDS, dataset_columns={"shapes": None})
    p = cell(df, "VQ-GAN", "CUB-200", "FID[inception]")
    assert p.paper == 3.63 and p.n_seeds == 0 and math.isnan(p.ours_mean) and "CUB-200" in p.note
    assert cell(df, "CVQ+LG", "MS-COCO", "PSNR").paper == 20.71
    # a shapes-cnn FID mapped onto a paper column still does not fill the paper's Inception FID
    mapped = build_table("reconstruction", RECORDS, dataset_columns={"shapes": "CUB-200"})
    inc = cell(mapped, "VQ-GAN", "CUB-200", "FID[inception]")
    assert inc.n_seeds == 0 and inc.paper == 3.63
    assert cell(mapped, "VQ-GAN", "CUB-200", "FID[shapes-cnn]").ours_mean == 11.0


@pytest.mark.parametrize("table, row, col, metric, value", [
    ("ablation", "VQ-GAN+Lmtp+Lras", "TextCaps", "FID[inception]", 20.77),
    ("masked_word", "VQ-GAN+LG", "CUB-200", "Recall@1[Mask-3]", 80.17),
    ("word_code_similarity", "VQ-GAN+LG", "CUB-200", "word_code_MSE", 0.0351),
    ("text_to_image", "LAFITE [55]", "CelebA-HQ", "FID[inception]", 12.54),
    ("vqa", "VQ-GAN+LG", "MS-COCO", "WUPS@0.9", 83.56),
    ("captioning", "V2L Tokenizer [56]", "CUB-200", "CIDEr-D", 104.14),
    ("grounding", "VQCT", "MS-COCO", "Accuracy@0.5", 9.46),
    ("codebook_usage", "VQ-GAN+LG", "MS-COCO", "usage", 97.89),
    ("vqct_lg", "VQCT+LG", "MS-COCO", "FID[inception]", 9.57),
])
def test_spot_checks_against_paper_md(table, row, col, metric, value):
    assert cell(build_table(table, [], dataset_columns={}), row, col, metric).paper == value


def test_fourteen_paper_tables_are_declared():
    assert len([t for t in TABLES if t != "dataset_stats"]) == 14


def test_new_tokenizer_gets_a_row_and_percent_metrics_scale():
    df = build_table("reconstruction", RECORDS, dataset_columns={"shapes": None})
    assert cell(df, "mine", "shapes", "PSNR").ours_mean == 15.0
    usage = build_table("codebook_usage", [rec("vqgan", "base", 0, {"usage": 0.25}, kind="codebook")],
                        dataset_columns={"shapes": None})
    assert cell(usage, "VQ-GAN", "shapes", "usage").ours_mean == 25.0


def test_a_metric_the_config_turned_off_says_why_instead_of_looking_unrun():
    off = {"FID": "FID not computed: eval.fid_extractor is none"}
    records = [{**rec("vqgan", "base", 0, {"PSNR": 20.0}, dataset="coco"), "not_computed": off},
               {**rec("mine", "lg", 0, {}, kind="unconditional", dataset="coco"), "not_computed": off}]
    df = build_table("reconstruction", records, dataset_columns={"coco": "MS-COCO"})
    fid = cell(df, "VQ-GAN", "MS-COCO", "FID[inception]")
    assert fid.status == "not computed" and "fid_extractor" in fid.note and fid.paper == 14.45
    assert cell(df, "VQ-GAN", "MS-COCO", "PSNR").ours_mean == 20.0
    assert cell(df, "VQ-GAN+LG", "MS-COCO", "FID[inception]").note == "not run in this config"
    # a task whose only metric is off still lists the run, with the reason (not an empty table)
    gen = build_table("unconditional", records, dataset_columns={"coco": "MS-COCO"})
    row = gen[gen.tokenizer == "mine"]
    assert len(row) == 1 and row.iloc[0].status == "not computed"


def test_bad_record_names_the_file():
    bad = dict(RECORDS[0], metrics={"PSNR": "high"}, _source="x/metrics.json")
    with pytest.raises(ArtifactError, match="x/metrics.json"):
        build_table("reconstruction", [bad], dataset_columns={})


def test_written_files(tmp_path):
    paths = write_table("reconstruction", RECORDS, tmp_path / "tables", dataset_columns={"shapes": None}, experiment="t")
    md = (tmp_path / "tables" / "reconstruction.md").read_text()
    assert "FID[shapes-cnn] ↓" in md and "11.00 ± 1.41 (n=2)" in md and "paper 24.08" in md and "Δ−2.50" in md
    rows = list(csv.DictReader(open(paths[0])))
    assert {"paper", "ours_mean", "ours_std", "n_seeds"} <= set(rows[0])
    assert "\\toprule" in (tmp_path / "tables" / "reconstruction.tex").read_text()  # the report: tests/test_report.py


def test_compute_per_table_sums_the_jobs_behind_its_numbers(tmp_path):
    import json

    from lgvq.config import validate_config
    from lgvq.pipeline import paths
    from lgvq.pipeline.tables import compute_per_table

    cfg = validate_config({"results_dir": str(tmp_path), "datasets": {"shapes": {"source": "shapes"}},
                           "tokenizers": {"vqgan": {"class": "vqgan"}}, "ablation": {"tokenizer": None}})
    tok = paths.tokenizer_dir(tmp_path, "shapes", "vqgan", "lg", 0)
    ev = paths.eval_dir(tmp_path, "reconstruction", "shapes", "vqgan", "lg", 0)
    for d, seconds, dev in ((tok, 3600, {"cuda_device": "NVIDIA H100"}), (tok / "codes", 360, {}), (ev, 36, {})):
        d.mkdir(parents=True, exist_ok=True)
        (d / "manifest.json").write_text(json.dumps({"wall_time_s": seconds, "device": dev}))
    hours = compute_per_table(cfg)["reconstruction"]
    assert hours["NVIDIA H100"] == pytest.approx(1.0) and hours["cpu"] == pytest.approx(0.11)
    assert compute_per_table(cfg)["captioning"] == {}  # downstream disabled by default: no jobs


def test_a_table_names_how_its_jobs_executed_when_not_fp32_eager(tmp_path):
    import json

    from lgvq.config import validate_config
    from lgvq.pipeline import paths
    from lgvq.pipeline.tables import execution_notes

    cfg = validate_config({"results_dir": str(tmp_path), "datasets": {"shapes": {"source": "shapes"}},
                           "tokenizers": {"vqgan": {"class": "vqgan"}}, "ablation": {"tokenizer": None}})
    tok = paths.tokenizer_dir(tmp_path, "shapes", "vqgan", "lg", 0)
    ev = paths.eval_dir(tmp_path, "reconstruction", "shapes", "vqgan", "lg", 0)
    fp32 = {"precision": "fp32", "tf32": False, "channels_last": False, "compile": False, "cudnn_benchmark": False}
    for d, execution in ((tok, {**fp32, "precision": "bf16-autocast", "tf32": True}), (ev, fp32)):
        d.mkdir(parents=True, exist_ok=True)
        (d / "manifest.json").write_text(json.dumps({"step": "x", "execution": execution}))
    notes = execution_notes(cfg, "reconstruction")
    assert list(notes) == ["bf16 autocast, TF32"] and str(tok) in notes["bf16 autocast, TF32"]
    write_table("reconstruction", RECORDS, tmp_path / "tables", dataset_columns={"shapes": None}, execution=notes)
    assert "- execution: bf16 autocast, TF32: not fp32 eager" in (tmp_path / "tables" / "reconstruction.md").read_text()
    (tok / "manifest.json").write_text(json.dumps({"step": "x", "execution": fp32}))
    assert execution_notes(cfg, "reconstruction") == {}  # all fp32 eager: nothing to say
    write_table("reconstruction", RECORDS, tmp_path / "t2", dataset_columns={"shapes": None}, execution={})
    assert "execution:" not in (tmp_path / "t2" / "reconstruction.md").read_text()


def test_a_table_says_when_its_jobs_ran_on_more_than_one_device_model(tmp_path):
    """fp32 training repeats bit for bit on one CPU model only: a results dir resumed on another machine mixes
    them, and the table must say so rather than present a machine difference as a model difference."""
    import json

    from lgvq.config import validate_config
    from lgvq.pipeline import paths
    from lgvq.pipeline.tables import machines_note

    cfg = validate_config({"results_dir": str(tmp_path), "datasets": {"shapes": {"source": "shapes"}},
                           "tokenizers": {"vqgan": {"class": "vqgan"}}, "ablation": {"tokenizer": None}})
    base, lg = (paths.tokenizer_dir(tmp_path, "shapes", "vqgan", v, 0) for v in ("base", "lg"))  # two runs
    ev = paths.eval_dir(tmp_path, "reconstruction", "shapes", "vqgan", "lg", 0)

    def ran_on(folder, step, device):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "manifest.json").write_text(json.dumps({"step": step, "device": device}))

    ran_on(base, "tokenizer/train", {"cpu_model": "AMD EPYC", "cuda_device": "NVIDIA H100"})
    ran_on(lg, "tokenizer/train", {"cpu_model": "Intel Xeon", "cuda_device": "NVIDIA H100"})
    ran_on(ev, "eval/reconstruction", {"cpu_model": "AMD EPYC"})
    # training on one GPU model, evaluation on a CPU node: different kinds of job, by design
    assert machines_note(cfg, "reconstruction") is None
    ran_on(lg, "tokenizer/train", {"cpu_model": "Intel Xeon", "cuda_device": "NVIDIA A100"})
    note = machines_note(cfg, "reconstruction")
    assert note and "tokenizer/train on NVIDIA A100 (1 jobs), NVIDIA H100 (1 jobs)" in note
    assert "eval/reconstruction" not in note
    write_table("reconstruction", RECORDS, tmp_path / "tables", dataset_columns={"shapes": None}, machines=note)
    assert "- machines: jobs of one kind ran on more than one device model: tokenizer/train" in (
        tmp_path / "tables" / "reconstruction.md").read_text()
    ran_on(base, "tokenizer/train", {"cpu_model": "AMD EPYC"})  # CPU runs: the CPU model is the device
    ran_on(lg, "tokenizer/train", {"cpu_model": "Intel Xeon"})
    assert "tokenizer/train on AMD EPYC (1 jobs), Intel Xeon (1 jobs)" in machines_note(cfg, "reconstruction")
    ran_on(lg, "tokenizer/train", {"cpu_count": 2})  # written before the CPU model was recorded: not a model
    assert machines_note(cfg, "reconstruction") is None
