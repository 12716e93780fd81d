"""docs/new_tokenizer.md: a tokenizer in a module outside the repository, named by its import path
(`class: my_tokenizers:PatchVQ`), by a `plugins:` registration or by an installed package's entry
point, is built by every process that reads the config; what its class declares in `needs` is
what the pipeline hands it; a wrong path is an error naming the config key."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from lgvq import doctor
from lgvq.config import ConfigError, tokenizer_job_slice, tokenizer_needs_text, validate_config
from lgvq.pipeline.preflight import problems
from lgvq.pipeline.tokenizer import build_models
from lgvq.tokenizers.base import Tokenizer
from lgvq.tokenizers.registry import TOKENIZERS, build_tokenizer, origin, tokenizer_class
from lgvq.train.tokenizer_task import TokenizerTask

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DOC = ROOT / "docs" / "new_tokenizer.md"
PARAMS = {"patch": 4, "embed_dim": 8, "n_embed": 32}

# Classes with needs, for the tests below (appended to the doc's module, so they come from outside too).
EXTRA = '''
from lgvq.tokenizers.needs import Needs


class WordCodebook(PatchVQ):
    needs = Needs(word_embeddings=True)

    def __init__(self, *, image_size, word_embeddings, n_embed=8):
        super().__init__(image_size=image_size, embed_dim=word_embeddings(n_embed).shape[1], n_embed=n_embed)
        self.words = word_embeddings(n_embed)


class ReadsCache(PatchVQ):
    needs = Needs(text_cache=True)

    def __init__(self, *, image_size, text_cache):
        super().__init__(image_size=image_size)
        self.cache = text_cache


class Pretrained(PatchVQ):
    needs = Needs(frozen_checkpoint=True)


class NoCodebook(Tokenizer):
    def forward(self, x): ...
    def decode_codes(self, codes): ...
    def generator_losses(self, x, out, step): ...


NOT_A_TOKENIZER = object()
'''


def module_dir(tmp_path: Path, extra: str = "") -> Path:
    """The doc's python block, written as the module `my_tokenizers` in a folder outside the repository."""
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    folder = tmp_path / "ext"
    folder.mkdir()
    (folder / "my_tokenizers.py").write_text(code + extra)
    return folder


def config(spec: str, **entry) -> dict:
    return {
        "name": "mine", "results_dir": "results", "seeds": [0], "expensive_seeds": [0],
        "datasets": {"shapes": {"source": "shapes", "synth": {"n": 40, "size": 16, "seed": 0}, "image_size": 16,
                                "eval_images": 8}},
        "tokenizers": {"mine": {"class": spec, "variants": ["base"], "params": dict(PARAMS), **entry}},
        "ablation": {"tokenizer": None},
        "train": {"steps": 3, "batch_size": 4, "lr": 0.001},
        "eval": {"fid_extractor": "none"},
    }


@pytest.fixture
def ext(tmp_path, monkeypatch):
    folder = module_dir(tmp_path, EXTRA)
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    sys.modules.pop("my_tokenizers", None)


def test_the_documented_tokenizer_trains_from_its_import_path(ext):
    cfg = validate_config(config("my_tokenizers:PatchVQ"))
    assert problems(cfg) == []
    model, lg, _ = build_models(cfg, "shapes", "mine", "base")
    assert type(model).__name__ == "PatchVQ" and type(model).__module__ == "my_tokenizers" and lg is None
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    task = TokenizerTask(model, None, lr=1e-2, betas=(0.5, 0.9))
    first = task.train_step({"image": x}, 0)["rec"]
    for step in range(1, 40):
        last = task.train_step({"image": x}, step)["rec"]
    assert last < first
    codes = model(x).codes
    assert codes.shape == (4, 4, 4) and model.decode_codes(codes).shape == x.shape
    assert origin("my_tokenizers:PatchVQ") == "import path (my_tokenizers:PatchVQ)"
    [check] = [c for c in doctor.checks(cfg) if c.name == "tokenizer: mine"]
    assert check.ok and check.detail == "class my_tokenizers:PatchVQ: import path (my_tokenizers:PatchVQ)"
    assert not tokenizer_needs_text(cfg, "shapes", "mine", "base")   # Needs(): no text cache for a base run


def test_a_wrong_class_is_an_error_naming_the_config_key(ext):
    with pytest.raises(ConfigError, match=r"tokenizers.mine.class: 'my tokenizers:Patch' is not an import path"):
        validate_config(config("my tokenizers:Patch"))
    for spec, message in [("patchvq", r"unknown tokenizer 'patchvq' \(registered: .*vqvae"),
                          ("no_such_module:PatchVQ", "cannot import module 'no_such_module'"),
                          ("my_tokenizers:PatchVq", "module 'my_tokenizers' has no attribute 'PatchVq'"),
                          ("my_tokenizers:NOT_A_TOKENIZER", "not a subclass of lgvq.tokenizers.base.Tokenizer"),
                          ("my_tokenizers:NoCodebook", r"does not implement the Tokenizer method\(s\) codebook")]:
        cfg = validate_config(config(spec))   # the form is fine: only resolving it tells
        assert [p for p in problems(cfg) if p.startswith("tokenizers.mine.class: ") and re.search(message, p)]
        with pytest.raises(ConfigError, match="tokenizers.mine.class: .*" + message):
            build_models(cfg, "shapes", "mine", "base")
        [check] = [c for c in doctor.checks(cfg) if c.name == "tokenizer: mine"]
        assert not check.ok and re.search(message, check.detail)


def test_tokenizer_is_an_abstract_base_class():
    with pytest.raises(TypeError, match="abstract"):
        Tokenizer()
    assert {"forward", "decode_codes", "codebook", "generator_losses"} <= Tokenizer.__abstractmethods__


def fake_cache(vocab: int = 50, width: int = 6) -> SimpleNamespace:
    """The fields of a TextCache that the word-embedding vocabulary reads: token 7 is the most frequent."""
    ids = np.array([[7, 7, 7, 3, 3, 9, 0]] * 4)
    return SimpleNamespace(token_embeddings=np.arange(vocab * width, dtype=np.float32).reshape(vocab, width),
                           token_ids=ids, valid=ids > 0, special=np.zeros_like(ids, dtype=bool), width=width)


def test_what_the_class_declares_in_needs_is_what_the_pipeline_hands_it(ext):
    cfg = validate_config(config("my_tokenizers:WordCodebook", params={"n_embed": 5}))
    assert tokenizer_needs_text(cfg, "shapes", "mine", "base")
    assert tokenizer_job_slice(cfg, "shapes", "mine", "base", 0)["text_encoder"] == cfg["text_encoder"]
    cache = fake_cache()
    model, _, _ = build_models(cfg, "shapes", "mine", "base", cache)
    emb = torch.as_tensor(cache.token_embeddings)
    assert model.words.shape == (5, 6) and torch.equal(model.words[:3], emb[[7, 3, 9]])  # most frequent first
    assert model.codebook_size == 5 and model.embed_dim == 6

    cfg = validate_config(config("my_tokenizers:ReadsCache", params={}))
    assert tokenizer_needs_text(cfg, "shapes", "mine", "base")
    assert build_models(cfg, "shapes", "mine", "base", cache)[0].cache is cache
    with pytest.raises(ConfigError, match="needs the text cache"):
        build_tokenizer("my_tokenizers:ReadsCache", {}, image_size=16)

    cfg = validate_config(config("my_tokenizers:Pretrained"))
    assert "tokenizers.mine.checkpoint: required: class 'my_tokenizers:Pretrained'" in "\n".join(problems(cfg))
    with pytest.raises(ConfigError, match="tokenizers.mine.checkpoint: required"):
        build_models(cfg, "shapes", "mine", "base")
    plain = validate_config(config("my_tokenizers:PatchVQ"))
    assert tokenizer_job_slice(plain, "shapes", "mine", "base", 0)["text_encoder"] is None


def test_a_plugin_module_registers_a_name(ext, monkeypatch):
    monkeypatch.setattr(TOKENIZERS, "_loaded", dict(TOKENIZERS._loaded))
    monkeypatch.setattr(TOKENIZERS, "_origin", dict(TOKENIZERS._origin))
    (ext / "my_registrations.py").write_text("from lgvq.tokenizers.registry import TOKENIZERS\n"
                                             "from my_tokenizers import PatchVQ\n"
                                             "TOKENIZERS.register('patchvq_plugin', PatchVQ)\n")
    cfg = validate_config({**config("patchvq_plugin"), "plugins": ["my_registrations"]})
    assert type(build_models(cfg, "shapes", "mine", "base")[0]).__name__ == "PatchVQ"
    assert origin("patchvq_plugin") == "plug-in module my_tokenizers"
    with pytest.raises(ConfigError, match="built-in"):
        TOKENIZERS.register("vqgan", tokenizer_class("my_tokenizers:PatchVQ"))
    sys.modules.pop("my_registrations", None)


def fake_distribution(ext: Path) -> None:
    """An installed package, as importlib.metadata sees one: a dist-info folder with entry_points.txt."""
    info = ext / "my_tokenizers-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-tokenizers\nVersion: 0.1\n")
    fake_distribution_entry(ext)


def fake_distribution_entry(ext: Path) -> None:
    (ext / "my_tokenizers-0.1.dist-info" / "entry_points.txt").write_text("[lgvq.tokenizers]\n"
                                                                         "patchvq_ep = my_tokenizers:PatchVQ\n")


def test_an_installed_package_registers_by_entry_point(ext, monkeypatch, tmp_path):
    fake_distribution(ext)
    monkeypatch.setattr(TOKENIZERS, "_entry_points", None)   # read the group again, with the fake one on sys.path
    monkeypatch.setattr(TOKENIZERS, "_loaded", dict(TOKENIZERS._loaded))
    cfg = validate_config(config("patchvq_ep"))
    assert type(build_models(cfg, "shapes", "mine", "base")[0]).__name__ == "PatchVQ"
    assert origin("patchvq_ep") == "entry point lgvq.tokenizers (my_tokenizers:PatchVQ)"
    entry_points = ext / "my_tokenizers-0.1.dist-info" / "entry_points.txt"
    entry_points.write_text("[lgvq.tokenizers]\nbroken = my_tokenizers:Gone\n")
    monkeypatch.setattr(TOKENIZERS, "_entry_points", None)
    assert any("tokenizers.mine.class: tokenizer 'broken' is the entry point lgvq.tokenizers 'my_tokenizers:Gone'" in p
               for p in problems(validate_config(config("broken"))))
    monkeypatch.setattr(TOKENIZERS, "_entry_points", None)
    fake_distribution_entry(ext)

    # and another process finds it with nothing but the folder on its path
    cfg_file = tmp_path / "mine.yaml"
    cfg_file.write_text(yaml.safe_dump(config("my_tokenizers:PatchVQ")))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ext), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([str(BIN / "lgvq"), "tokenizer", "list", "--config", str(cfg_file)], env=env,
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    lines = {line.split()[0]: line for line in run.stdout.splitlines()}
    assert "entry point lgvq.tokenizers (my_tokenizers:PatchVQ)" in lines["patchvq_ep"]
    assert "built-in (lgvq.tokenizers.vqct:VQCT)" in lines["vqct"]
    assert "class my_tokenizers:PatchVQ: import path" in lines["tokenizers.mine"]


@pytest.mark.slow
def test_the_documented_tokenizer_reaches_the_reconstruction_table_through_the_dag(tmp_path):
    """The smoke DAG cut to the doc's tokenizer alone, named by its import path, from a folder
    outside the repository that only PYTHONPATH points to."""
    folder = module_dir(tmp_path)
    cfg_file = tmp_path / "mine.yaml"
    cfg_file.write_text(yaml.safe_dump(config("my_tokenizers:PatchVQ")))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([str(BIN / "snakemake"), "results/tables/reconstruction.md", "--cores", "2", "-s",
                          str(ROOT / "Snakefile"), "--directory", str(tmp_path), "--configfile", str(cfg_file)],
                         env=env, capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    table = pd.read_csv(tmp_path / "results" / "tables" / "reconstruction.csv")
    ours = table[(table.tokenizer == "mine") & (table.status == "ours")]
    assert set(ours.metric) >= {"PSNR", "SSIM"} and ours.ours_mean.notna().all()
    manifest = (tmp_path / "results" / "shapes" / "tokenizers" / "mine" / "base" / "seed0" / "manifest.json")
    assert '"PatchVQ"' in manifest.read_text()
