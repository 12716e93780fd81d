"""The second-stage task registry: every list of stage-2 tasks (config check, schema default, CLI,
wildcards, the plan's table mapping) comes from `STAGE2_TASKS`; each built-in task trains and samples
through its task object; a plug-in task defined in one file outside the repository is planned by the
DAG and gets its own table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lgvq.config import ConfigError, load_config, load_schema, validate_config
from lgvq.pipeline import plan
from lgvq.stage2.registry import STAGE2_TASKS, Stage2Context

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BUILTINS = ["unconditional", "completion", "semantic", "t2i_diffusion", "t2i_ar"]

PLUGIN = '''
"""toy_s2: a plug-in second-stage task with its own table (unconditional CodeGPT, another name)."""
from lgvq.stage2.registry import STAGE2_TASKS, Stage2Task
from lgvq.tables.paper import Table


@STAGE2_TASKS.register("toy_s2")
class ToyStage2(Stage2Task):
    name = "toy_s2"
    table_id = "toy_generation"
    table = Table("toy_generation", "-", "Toy generation (a plug-in stage-2 task).", kinds=("toy_generation",),
                  metrics=("FID",), paper_columns=(), rows=())
'''


def smoke(**stage2) -> dict:
    cfg = load_config(ROOT / "config" / "smoke.yaml")
    cfg["stage2"].update(stage2)
    return cfg


def test_the_schema_default_is_every_builtin_task_and_the_schema_lists_no_names():
    s2 = load_schema()["properties"]["stage2"]["properties"]
    assert STAGE2_TASKS.names()[: len(BUILTINS)] == BUILTINS
    assert s2["tasks"]["default"] == [n for n in STAGE2_TASKS.names() if STAGE2_TASKS.is_builtin(n)]
    assert "enum" not in s2["tasks"]["items"]  # names are checked against the registry (plug-ins add some)


def test_the_plan_maps_tables_to_the_tasks_that_fill_them():
    assert plan.stage2_table_tasks() == {"unconditional": ("unconditional",), "completion": ("completion",),
                                         "semantic_synthesis": ("semantic",),
                                         "text_to_image": ("t2i_diffusion", "t2i_ar")}
    cfg = validate_config(load_config(ROOT / "config" / "smoke.yaml"))
    kinds = [m.path.parts[-5] for m in plan.model_inputs(cfg, "text_to_image")]
    assert set(kinds) == {"stage2-t2i_diffusion", "stage2-t2i_ar"} and kinds.index("stage2-t2i_ar") > kinds.index(
        "stage2-t2i_diffusion")


@pytest.mark.parametrize("key, patch", [
    ("stage2.tasks", lambda c: c["stage2"].update(tasks=["unconditional", "uncondtional"])),
    ("stage2.tokenizers", lambda c: c["stage2"].update(tokenizers={"t2i": ["vqgan"]})),
    ("datasets.shapes.stage2_tasks", lambda c: c["datasets"]["shapes"].update(stage2_tasks=["semantics"])),
])
def test_an_unknown_task_name_is_refused_naming_the_key(key, patch):
    cfg = smoke()
    patch(cfg)
    with pytest.raises(ConfigError, match=rf"{key}: unknown second-stage task\(s\).*known: unconditional, completion"):
        validate_config(cfg)


def test_the_cli_refuses_an_unregistered_task_naming_the_flag(tmp_path, capsys):
    from lgvq.cli import main

    rc = main(["stage2", "run", "--task", "outpainting", "--config", str(ROOT / "config" / "smoke.yaml"),
               "--dataset", "shapes", "--tokenizer", "vqgan", "--variant", "base", "--seed", "0"])
    assert rc == 2
    assert "--task: unknown second-stage task 'outpainting'" in capsys.readouterr().err


# --- each built-in task through its task object ---------------------------------------------------

class _StubCache:
    """A text cache of one caption per image: features (B, 5, 6) with two padded positions."""

    width, tokens = 6, np.zeros((1, 5, 6))

    def row(self, image_id, caption):
        return image_id

    def features(self, rows):
        g = torch.Generator().manual_seed(0)
        valid = torch.tensor([[True, True, True, False, False]]).expand(len(rows), 5)
        return SimpleNamespace(tokens=torch.randn(len(rows), 5, 6, generator=g), valid=valid)

    def describe(self):
        return {"name": "stub"}


class _StubLabelVQ:
    grid = 4

    def encode(self, lm):  # (1, 16, 16) class ids -> (1, 4, 4) label codes
        return lm[:, ::4, ::4] % 7


def _ctx() -> Stage2Context:
    records = [SimpleNamespace(image_id=i, captions=[f"caption {i}"]) for i in range(6)]
    from dataclasses import replace

    from lgvq.settings import stage2_settings

    settings = replace(stage2_settings(load_config(ROOT / "config" / "smoke.yaml")), width=16, layers=1, heads=2,
                       dropout=0.0, diffusion_steps=3, diffusion_layers=None, temperature=1.0, top_k=None, top_p=None,
                       fast_path=False, steps=1, batch_size=2)
    return Stage2Context(settings, "shapes", records[:4], records[4:], (4, 4), 10, "cpu", text_cache=_StubCache,
                         label_map_vq=lambda: (_StubLabelVQ(), {"n_embed": 7}),
                         label_map=lambda r: np.full((16, 16), r.image_id, dtype=np.int64))


@pytest.mark.parametrize("name", BUILTINS)
def test_a_builtin_task_trains_and_samples_codes_of_the_grid(name):
    task, ctx = STAGE2_TASKS.get(name), _ctx()
    cond = task.conditions(ctx)
    torch.manual_seed(0)
    model = task.build(ctx, cond)
    recs = ctx.test_records
    real = torch.randint(0, 10, (2, 4, 4))
    loss = task.loss(model, real, cond.of(recs, [r.captions[0] for r in recs]))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None for p in model.parameters())
    given = task.given(real)
    with torch.no_grad():
        codes = task.generate(model.eval(), 2, cond.of(recs, [r.captions[0] for r in recs]), given,
                              torch.Generator().manual_seed(1), "cpu", ctx.settings)
    assert codes.shape == (2, 4, 4) and 0 <= int(codes.min()) and int(codes.max()) < 10
    if name == "completion":  # the top half of the real grid is kept bit-exact
        assert torch.equal(given, real[:, :2].flatten(1)) and torch.equal(codes[:, :2], real[:, :2])
    else:
        assert given is None
    assert (model.cond is not None) == (name in ("semantic", "t2i_ar"))
    assert task.table_id in plan.PAPER_TABLE_IDS


# --- a plug-in task ------------------------------------------------------------------------------------

def test_a_plugin_task_gets_its_rows_its_table_and_its_dag_jobs(tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "toy_s2.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(folder))
    cfg = smoke(tasks=["unconditional", "toy_s2"], tokenizers={"toy_s2": ["vqgan"]})
    cfg["plugins"] = ["toy_s2"]
    checked = validate_config(cfg)
    assert "toy_generation" in plan.table_ids(checked)
    assert {(m.path.parts[-5], m.run.tokenizer) for m in plan.table_metric_inputs(checked, "toy_generation")} == {
        ("stage2-toy_s2", "vqgan")}
    from lgvq.tables.paper import table_spec

    assert table_spec("toy_generation").caption.startswith("Toy generation")

    import yaml

    cfg_file = tmp_path / "toy.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([str(BIN / "snakemake"), "-n", "-p", "--cores", "1", "results/tables/toy_generation.md", "-s",
                          str(ROOT / "Snakefile"), "--directory", str(tmp_path), "--configfile", str(cfg_file),
                          "--config", "results_dir=results"], env=env, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "stage2 run --task toy_s2" in out.stdout and "--tokenizer vqgan" in out.stdout
    assert "stage2 run --task unconditional" not in out.stdout  # the table reads only its own task's records


def test_the_generator_label_names_the_depth_the_network_was_built_with():
    from dataclasses import replace
    from types import SimpleNamespace

    task, ctx = STAGE2_TASKS.get("t2i_diffusion"), _ctx()
    deep = replace(ctx.settings, diffusion_layers=3)
    model = SimpleNamespace(net=task.network(replace(ctx, settings=deep), task.conditions(ctx)))
    assert len(model.net.blocks) == 3
    assert ", 3 layers," in task.describe(model, deep)  # stage2.diffusion_layers, not stage2.layers (1 here)
