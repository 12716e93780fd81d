"""The typed settings (lgvq.settings): every shipped config converts; schema and dataclasses cannot drift apart;
the layers below the pipeline (tasks, data, models, training, metrics, tables) never index the raw config."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from lgvq.config import ConfigError, load_config
from lgvq.settings import (DownstreamSettings, data_settings, dataset_settings, downstream_settings, eval_settings,
                           from_section, lg_settings, stage2_settings, text_encoder_settings, thawed, tokenizer_settings,
                           train_settings)

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted(p.name for p in (ROOT / "config").glob("*.yaml") if p.name != "schema.yaml")


@pytest.mark.parametrize("name", CONFIGS)
def test_every_shipped_config_becomes_typed_settings(name):
    cfg = load_config(ROOT / "config" / name)
    s2, ds, te = stage2_settings(cfg), downstream_settings(cfg), text_encoder_settings(cfg)
    assert s2.width == cfg["stage2"]["width"] and ds.max_words == cfg["downstream"]["max_words"]
    assert te.max_length == cfg["text_encoder"]["max_length"]
    assert data_settings(cfg).prefetch == cfg["data"]["prefetch"]
    for key in cfg["datasets"]:
        d = dataset_settings(cfg, key)
        assert d.key == key and d.image_size == cfg["datasets"][key]["image_size"]
    assert train_settings(cfg).steps == cfg["train"]["steps"] and lg_settings(cfg).layers == cfg["lg"]["layers"]
    assert eval_settings(cfg).fid_extractor == cfg["eval"]["fid_extractor"]
    for key, entry in cfg["tokenizers"].items():
        t = tokenizer_settings(cfg, key)
        assert (t.key, t.class_, t.steps) == (key, entry["class"], entry["steps"])
        assert thawed(t.params) == entry["params"]  # what the tokenizer's constructor receives: the user's params


def test_a_key_the_dataclass_lacks_or_misses_is_an_error_naming_the_section():
    raw = dict(load_config(ROOT / "config" / "smoke.yaml")["downstream"])
    with pytest.raises(ConfigError, match=r"downstream: .*not in the dataclass: new_key"):
        from_section(DownstreamSettings, {**raw, "new_key": 1}, "downstream")
    del raw["beam"]
    with pytest.raises(ConfigError, match=r"downstream: .*missing: beam"):
        from_section(DownstreamSettings, raw, "downstream")


def test_settings_are_frozen_all_the_way_down():
    cfg = load_config(ROOT / "config" / "config.yaml")
    s = stage2_settings(cfg)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.width = 1  # type: ignore[misc]
    assert isinstance(s.tasks, tuple) and isinstance(s.tokenizers["t2i_diffusion"], tuple)
    with pytest.raises(TypeError):
        s.tokenizers["t2i_diffusion"] = ("vqvae",)  # type: ignore[index]
    assert cfg["stage2"]["tasks"] == list(s.tasks)  # the raw config (job hashes) is left as it was


def test_the_layers_below_the_pipeline_never_index_the_raw_config():
    offenders = []
    for folder in ("stage2", "downstream", "data", "text", "tokenizers", "lg", "train", "metrics", "tables"):
        for path in sorted((ROOT / "lgvq" / folder).rglob("*.py")):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if re.search(r"\bcfg\[|\.cfg\b|cfg: dict", line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


# The job modules of the pipeline: they turn the raw config into typed settings and pass those (and paths)
# on; the raw dict is read only for `results_dir` (every path starts there) and the job hashes' slices
# (lgvq.pipeline.jobs), which hash the config as data.
JOB_MODULES = ("tokenizer", "evaluate", "stage2", "downstream", "text", "data", "artifacts", "common",
               "reference_images", "reference_text", "reference_heads", "reference_blind", "reference_jobs")


def test_the_pipelines_job_modules_read_the_raw_config_only_for_results_dir():
    offenders = []
    for name in JOB_MODULES:
        path = ROOT / "lgvq" / "pipeline" / f"{name}.py"
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for m in re.finditer(r"\bcfg\[([^\]]*)\]", line):
                if m.group(1) != '"results_dir"':
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
