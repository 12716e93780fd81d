"""Config validation: defaults are filled, bad values are refused with the key named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lgvq.config import ConfigError, learning_rate, lg_weights_for, load_config, validate_config
from lgvq.pipeline import plan

ROOT = Path(__file__).resolve().parent.parent
MINIMAL = {"datasets": {"shapes": {"source": "shapes"}}, "tokenizers": {"vqgan": {"class": "vqgan"}}}


def write(tmp_path, cfg) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


@pytest.mark.parametrize("name", ["config.yaml", "smoke.yaml", "paper.yaml", "medium.yaml", "full.yaml", "field.yaml"])
def test_shipped_configs_validate(name):
    if not (ROOT / "config" / name).exists():
        pytest.fail(f"config/{name} is missing")
    cfg = load_config(ROOT / "config" / name)
    assert cfg["datasets"] and cfg["tokenizers"]


def test_defaults_are_filled():
    cfg = validate_config(MINIMAL)
    assert cfg["train"]["betas"] == [0.5, 0.9]
    assert cfg["datasets"]["shapes"]["lg_weights"] == {"gsa": 0.001, "mtp": 0.01, "ras": 0.0001}
    assert cfg["tokenizers"]["vqgan"]["variants"] == ["base", "lg"]
    assert cfg["text_encoder"]["max_length"] == 30


@pytest.mark.parametrize(
    "patch, key",
    [
        ({"train": {"steps": 0}}, "train.steps"),
        ({"train": {"stepz": 10}}, "train"),  # a typo is an error, not a silent default
        ({"text_encoder": {"name": "bert"}}, "text_encoder.name"),
        ({"seeds": ["a"]}, "seeds.0"),
        ({"tokenizers": {"vqgan": {"class": "vqgan", "variants": ["lg+"]}}}, "tokenizers.vqgan.variants.0"),
        ({"ablation": {"tokenizer": "nope"}}, "ablation.tokenizer"),
        ({"stage2": {"tokenizers": {"semantic": ["vqgam"]}}}, "stage2.tokenizers.semantic"),
        ({"downstream": {"tokenizers": {"vqa2": ["vqgan"]}}}, "downstream.tokenizers"),
    ],
)
def test_bad_values_name_the_key(tmp_path, patch, key):
    cfg = {**MINIMAL, **patch}
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, cfg))
    assert key in str(err.value) and "c.yaml" in str(err.value)


def test_variants_switch_exactly_their_terms():
    cfg = validate_config(MINIMAL)
    assert lg_weights_for(cfg, "shapes", "base") == {"gsa": 0.0, "mtp": 0.0, "ras": 0.0}
    assert lg_weights_for(cfg, "shapes", "mtp-ras") == {"gsa": 0.0, "mtp": 0.01, "ras": 0.0001}
    assert lg_weights_for(cfg, "shapes", "lg") == {"gsa": 0.001, "mtp": 0.01, "ras": 0.0001}


def test_learning_rate_follows_the_authors_rule_unless_fixed():
    cfg = validate_config({**MINIMAL, "train": {"batch_size": 8}})
    assert learning_rate(cfg) == pytest.approx(3.6e-5)  # 4.5e-6 x 8, PAPER.md
    cfg = validate_config({**MINIMAL, "train": {"lr": 1e-3}})
    assert learning_rate(cfg) == 1e-3


def test_ablation_table_reads_only_its_runs():
    cfg = validate_config({**MINIMAL, "seeds": [0, 1], "ablation": {"tokenizer": "vqgan"}})
    files = plan.table_inputs(cfg, "ablation")
    variants = {f.parts[-3] for f in files}
    assert variants == {"base", "gsa", "mtp", "mtp-ras", "mtp-gsa", "lg"}
    assert len(files) == 6 * 2 and all("reconstruction" in f.parts for f in files)


def test_ablation_seeds_narrow_table_2_only():
    cfg = validate_config({**MINIMAL, "seeds": [0, 1, 2], "ablation": {"tokenizer": "vqgan", "seeds": [0]}})
    assert {(f.parts[-3], f.parts[-2]) for f in plan.table_inputs(cfg, "ablation")} == {
        (v, "seed0") for v in ("base", "gsa", "mtp", "mtp-ras", "mtp-gsa", "lg")}
    assert {f.parts[-2] for f in plan.table_inputs(cfg, "reconstruction")} == {"seed0", "seed1", "seed2"}
    assert len(list(plan.tokenizer_runs(cfg))) == 2 * 3 + 4  # base/+LG on 3 seeds, 4 ablation variants on 1
    with pytest.raises(ConfigError, match="ablation.seeds"):
        validate_config({**MINIMAL, "ablation": {"tokenizer": "vqgan", "seeds": [5]}})


def test_every_table_has_a_plan():
    cfg = validate_config(MINIMAL)
    for table in plan.table_ids(cfg):
        plan.table_inputs(cfg, table)  # raises for an unknown table
    with pytest.raises(KeyError):
        plan.table_inputs(cfg, "no_such_table")


def test_paper_profile_runs_each_task_only_on_its_papers_dataset():
    cfg = load_config(ROOT / "config" / "paper.yaml")
    datasets = lambda table: {f.parts[-7] for f in plan.table_inputs(cfg, table) if "reference" not in f.parts}  # noqa: E731
    references = lambda table: {f.parts[-8] for f in plan.table_inputs(cfg, table) if "reference" in f.parts}  # noqa: E731
    assert references("vqa") == references("grounding") == {"coco"} and references("captioning") == {"cub"}
    assert datasets("vqa") == datasets("grounding") == {"coco"}
    assert datasets("captioning") == {"cub"}
    assert datasets("text_to_image") == datasets("completion") == {"celebahq"}
    assert {f.parts[-5] for f in plan.table_inputs(cfg, "text_to_image") if "reference" not in f.parts} == {
        "stage2-t2i_diffusion"}


def test_disabled_stages_feed_no_table():
    cfg = validate_config({**MINIMAL, "stage2": {"enabled": False}, "downstream": {"enabled": False}})
    for table in ("text_to_image", "unconditional", "captioning", "vqa", "grounding"):
        assert plan.table_inputs(cfg, table) == []


def test_a_task_runs_only_on_its_listed_tokenizers_and_unlisted_tasks_on_all():
    two = {"vqgan": {"class": "vqgan"}, "cvq": {"class": "cvq"}}
    cfg = validate_config({**MINIMAL, "tokenizers": two, "stage2": {"enabled": True, "tokenizers": {"unconditional": ["vqgan"]}}})
    assert {(r.tokenizer, r.variant) for r in plan.task_runs(cfg, "stage2", "unconditional")} == {("vqgan", "base"), ("vqgan", "lg")}
    assert {r.tokenizer for r in plan.task_runs(cfg, "stage2", "completion")} == {"vqgan", "cvq"}
    assert {f.parts[-4] for f in plan.table_inputs(cfg, "unconditional") if "reference" not in f.parts} == {"vqgan"}


def test_narrowing_which_jobs_run_keeps_the_finished_jobs_hashes():
    from lgvq.sections import head_settings

    wide = validate_config({**MINIMAL, "stage2": {"enabled": True}})
    narrow = validate_config({**MINIMAL, "stage2": {"enabled": True, "tasks": ["completion"], "tokenizers": {"completion": ["vqgan"]}}})
    wider_model = validate_config({**MINIMAL, "stage2": {"enabled": True, "width": 128}})
    assert head_settings(wide, "stage2") == head_settings(narrow, "stage2")
    assert head_settings(wide, "stage2") != head_settings(wider_model, "stage2")


def test_single_process_jobs_and_datasets_ignore_keys_that_do_not_change_them():
    from lgvq.sections import head_settings
    from lgvq.pipeline import jobs

    one = validate_config({**MINIMAL, "stage2": {"enabled": True}})
    two = validate_config({**MINIMAL, "stage2": {"enabled": True, "gpus": 2}})
    assert head_settings(one, "stage2") != head_settings(two, "stage2")  # data parallel: the global batch doubles
    assert head_settings(one, "stage2", data_parallel=False) == head_settings(two, "stage2", data_parallel=False)
    moved = validate_config({**MINIMAL, "datasets": {"shapes": {"source": "shapes", "paper_column": "CUB-200",
                                                                "stage2_tasks": ["completion"], "cache_dir": "/c"}}})
    resized = validate_config({**MINIMAL, "datasets": {"shapes": {"source": "shapes", "image_size": 64}}})
    fewer_eval = validate_config({**MINIMAL, "datasets": {"shapes": {"source": "shapes", "eval_images": 4}}})
    # the data stage (and so every job after it) ignores selection keys, image size and evaluation size
    assert jobs.data(moved, "shapes") == jobs.data(one, "shapes") == jobs.data(resized, "shapes") \
        == jobs.data(fewer_eval, "shapes")
    # the image size reaches the jobs that read images at it; the evaluation size only the evaluations
    assert jobs.feature_extractor(resized, "shapes") != jobs.feature_extractor(one, "shapes")
    assert jobs.tokenizer(fewer_eval, "shapes", "vqgan", "base", 0) == jobs.tokenizer(one, "shapes", "vqgan", "base", 0)
    assert jobs.reconstruction(fewer_eval, "shapes", "vqgan", "base", 0) != jobs.reconstruction(one, "shapes", "vqgan", "base", 0)


def test_heads_must_divide_the_width():
    with pytest.raises(ConfigError, match="downstream.heads"):
        validate_config({**MINIMAL, "downstream": {"width": 30, "heads": 4}})


def test_paths_expand_environment_variables_and_an_unset_one_is_named(monkeypatch):
    cfg = {**MINIMAL, "datasets": {"cub": {"source": "cub", "root": "${LGVQ_TEST_DATA}/cub"}}}
    monkeypatch.setenv("LGVQ_TEST_DATA", "/mnt/data")
    assert validate_config(cfg)["datasets"]["cub"]["root"] == "/mnt/data/cub"
    monkeypatch.delenv("LGVQ_TEST_DATA")
    with pytest.raises(ConfigError, match=r"datasets.cub.root: environment variable\(s\) LGVQ_TEST_DATA not set"):
        validate_config(cfg)


def test_precision_and_compile_change_a_runs_hash_but_checkpoint_cadence_does_not():
    from lgvq.config import tokenizer_job_slice
    from lgvq.manifest import config_hash
    from lgvq.pipeline import jobs

    def h(train):
        return config_hash(tokenizer_job_slice(validate_config({**MINIMAL, "train": train}), "shapes", "vqgan", "base", 0))

    assert h({}) == h({"ckpt_every": 7}) == h({"log_every": 3}) == h({"gpus": 1})  # resume is exact at any cadence
    # a bf16 or compiled run computes other numbers: a table must be able to tell it from an fp32 eager one
    assert len({h({}), h({"compile": True}), h({"fast_path": False})}) == 3
    for stage, job in (("stage2", jobs.stage2_training), ("downstream", jobs.downstream_training)):
        slices = [job(validate_config({**MINIMAL, stage: {"fast_path": fast}}), "unconditional", "shapes", "vqgan",
                      "base", 0) for fast in (True, False)]
        assert config_hash(slices[0]) != config_hash(slices[1]), stage
    assert h({"gpus": 2}) != h({})  # the global batch doubles
    assert h({"steps": 7}) != h({})


def test_a_float_yaml_reads_as_a_string_gets_a_hint_how_to_write_it(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("datasets: {shapes: {source: shapes}}\ntokenizers: {vqgan: {class: vqgan}}\ntrain: {lr: 2e-4}\n")
    with pytest.raises(ConfigError, match=r"train\.lr: .*YAML reads 2e-4 as a string: write it with a dot, e\.g\. 0\.0002"):
        load_config(path)


def test_a_quoted_integer_gets_a_hint_to_drop_the_quotes_not_to_add_a_dot(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("datasets: {shapes: {source: shapes}}\ntokenizers: {vqgan: {class: vqgan}}\ntrain: {steps: '600'}\n")
    with pytest.raises(ConfigError, match=r"train\.steps: .*a quoted number: write it without quotes, e\.g\. 600\)"):
        load_config(path)


def test_a_base_tokenizers_hash_ignores_the_lg_module_and_the_text_encoder_it_does_not_use():
    from lgvq.config import tokenizer_job_slice

    one = validate_config(MINIMAL)
    wider = validate_config({**MINIMAL, "lg": {"layers": 1}, "text_encoder": {"max_length": 16}})
    assert tokenizer_job_slice(one, "shapes", "vqgan", "base", 0) == tokenizer_job_slice(wider, "shapes", "vqgan", "base", 0)
    assert tokenizer_job_slice(one, "shapes", "vqgan", "lg", 0) != tokenizer_job_slice(wider, "shapes", "vqgan", "lg", 0)
    vqct = {**MINIMAL, "tokenizers": {"vqct": {"class": "vqct"}}}  # its codebook comes from word embeddings
    assert tokenizer_job_slice(validate_config(vqct), "shapes", "vqct", "base", 0) != tokenizer_job_slice(
        validate_config({**vqct, "text_encoder": {"max_length": 16}}), "shapes", "vqct", "base", 0)


def test_the_decoders_training_input_enters_only_lg_hashes_and_only_when_not_the_papers():
    from lgvq.config import tokenizer_job_slice

    def lg_slice(lg, variant="lg"):
        return tokenizer_job_slice(validate_config({**MINIMAL, "lg": lg}), "shapes", "vqgan", variant, 0)

    before = lg_slice({})["lg"]  # what a config written before the key hashes
    assert "mtp_input" not in before and lg_slice({"mtp_input": "paper"})["lg"] == before
    assert lg_slice({"mtp_input": "leak_free"})["lg"] == {**before, "mtp_input": "leak_free"}
    assert lg_slice({"mtp_input": "leak_free"}, "base") == lg_slice({}, "base")
    assert lg_slice({"mtp_input": "leak_free"}, "gsa") == lg_slice({}, "gsa")  # no L_mtp: the same training
    with pytest.raises(ConfigError, match=r"lg\.mtp_input"):
        validate_config({**MINIMAL, "lg": {"mtp_input": "leakfree"}})


def test_the_c_yaml_parser_reads_the_schema_and_every_shipped_config_as_the_python_parser_does():
    """Every job validates its config against the schema; lgvq.config.load_yaml parses with libyaml when PyYAML
    has it (~10x faster per job). It must read what the pure-Python parser reads."""
    from lgvq.config import SCHEMA_PATH, load_yaml

    root = Path(__file__).resolve().parent.parent
    for path in [SCHEMA_PATH, *sorted((root / "config").glob("*.yaml"))]:
        text = path.read_text()
        assert load_yaml(text) == yaml.load(text, Loader=yaml.SafeLoader), path
