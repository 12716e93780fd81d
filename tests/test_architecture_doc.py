"""docs/architecture.md's worked example: a downstream task defined in one file outside the
repository reaches a table of the smoke DAG; and what the config says when a plug-in or a task
name is wrong."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lgvq.config import ConfigError, validate_config
from lgvq.downstream.registry import HEADS
from lgvq.pipeline import plan

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DOC = ROOT / "docs" / "architecture.md"
TINY = {"ch": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "z_channels": 8, "embed_dim": 8,
        "n_embed": 16}


def plugin_dir(tmp_path: Path) -> Path:
    """The doc's python block, written as the module `object_count` in a folder of its own."""
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "object_count.py").write_text(code)
    return folder


def config(tasks: list[str]) -> dict:
    return {
        "name": "plugin", "results_dir": "results", "seeds": [0], "expensive_seeds": [0],
        "plugins": ["object_count"],
        "datasets": {"shapes": {"source": "shapes", "synth": {"n": 40, "size": 16, "seed": 0}, "image_size": 16,
                                "eval_images": 4}},
        "tokenizers": {"vqvae": {"class": "vqvae", "variants": ["base"], "params": dict(TINY)}},
        "ablation": {"tokenizer": None},
        "train": {"steps": 3, "batch_size": 4, "lr": 0.001},
        "eval": {"fid_extractor": "none"},
        "downstream": {"enabled": True, "tasks": tasks, "steps": 20, "batch_size": 8, "width": 16, "layers": 1,
                       "heads": 2},
    }


def test_a_plugin_task_is_known_to_the_config_and_the_plan(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_dir(tmp_path)))
    cfg = validate_config(config(["vqa", "object_count"]))
    assert "object_count" in HEADS and "object_count" in plan.table_ids(cfg)
    assert [m.path.parts[-5] for m in plan.table_metric_inputs(cfg, "object_count")] == ["object_count"]
    assert "object_count" not in plan.table_ids(validate_config(config(["vqa"])))   # not enabled, no table


def test_a_wrong_plugin_or_task_name_is_an_error_naming_the_key():
    with pytest.raises(ConfigError, match=r"plugins\[0\].*no_such_module"):
        validate_config({**config(["vqa"]), "plugins": ["no_such_module"]})
    with pytest.raises(ConfigError, match=r"downstream.tasks.*'colouring'.*captioning, vqa, grounding"):
        validate_config({**config(["colouring"]), "plugins": []})
    bad = config(["vqa"])
    bad["plugins"] = []
    bad["datasets"]["shapes"]["downstream_tasks"] = ["vqa", "counting"]
    with pytest.raises(ConfigError, match=r"datasets.shapes.downstream_tasks.*'counting'"):
        validate_config(bad)
    with pytest.raises(ConfigError, match="built-in"):
        HEADS.register("vqa", object())


@pytest.mark.slow
def test_the_documented_task_reaches_its_table_through_the_dag(tmp_path):
    folder = plugin_dir(tmp_path)
    cfg_file = tmp_path / "plugin.yaml"
    cfg_file.write_text(yaml.safe_dump(config(["object_count"])))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([str(BIN / "snakemake"), "results/tables/object_count.md", "--cores", "2", "-s",
                          str(ROOT / "Snakefile"), "--directory", str(tmp_path), "--configfile", str(cfg_file)],
                         env=env, capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    table = pd.read_csv(tmp_path / "results" / "tables" / "object_count.csv")
    ours = table[(table.tokenizer == "vqvae") & (table.metric == "Accuracy")]
    assert len(ours) == 1 and ours.status.item() == "ours" and 0 <= ours.ours_mean.item() <= 100
    assert "Number of shapes per image" in (tmp_path / "results" / "tables" / "object_count.md").read_text()
