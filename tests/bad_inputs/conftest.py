"""Fixtures of the bad-input catalogue: one tiny run per session (data, a text cache from a stand-in
encoder, a trained and encoded tokenizer, the shapes-cnn extractor, a reconstruction evaluation),
and a fresh copy of it for every case."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from bad_inputs_kit import CONFIG, RUN, Env, StandInEncoder, write_config

from lgvq.cli import main


@pytest.fixture(scope="session")
def base(tmp_path_factory) -> Path:
    from lgvq.data.registry import get_source
    from lgvq.text.cache import build_text_cache

    root = tmp_path_factory.mktemp("bad_inputs")
    cfg_path = write_config(root, CONFIG)
    sel = ["--config", str(cfg_path), "--dataset", "shapes"]
    assert main(["data", "prepare", *sel]) == 0
    source = get_source("shapes", root / "res/shapes/data/generated")
    caps = {r.image_id: list(r.captions) for s in source.splits() for r in source.records(s)}
    build_text_cache(caps, StandInEncoder(), root / "res/shapes/text/minilm.npz")
    assert main(["metrics", "train-extractor", *sel]) == 0
    for verb in (["tokenizer", "train"], ["tokenizer", "encode"], ["eval", "reconstruction"]):
        assert main([*verb, *sel, *RUN[2:]]) == 0, verb  # RUN[2:]: the selectors after --dataset
    return root



@pytest.fixture
def env(base, tmp_path, capsys, monkeypatch) -> Env:
    dst = tmp_path / "run"
    shutil.copytree(base, dst, symlinks=True)
    marker = dst / "res/shapes/data/prepared.json"
    info = json.loads(marker.read_text())
    info["root"] = info["root"].replace(str(base), str(dst))  # the copy reads its own images
    marker.write_text(json.dumps(info))
    return Env(dst, capsys, monkeypatch)
