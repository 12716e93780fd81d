"""A frozen external checkpoint is evaluated in the same protocol without training (issue 9)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from lgvq.cli import main
from lgvq.config import load_config
from lgvq.pipeline import paths
from lgvq.pipeline.tokenizer import load_tokenizer
from lgvq.tokenizers.registry import build_tokenizer

TINY = dict(ch=8, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[], z_channels=8, embed_dim=8, n_embed=32)


@pytest.fixture()
def setup(tmp_path):
    torch.manual_seed(3)
    external = build_tokenizer("vqvae", TINY, image_size=16)
    torch.save(external.state_dict(), tmp_path / "external.pt")
    cfg = {"results_dir": str(tmp_path / "results"),
           "datasets": {"shapes": {"source": "shapes", "synth": {"n": 20, "size": 16}, "image_size": 16, "eval_images": 4}},
           "tokenizers": {"ext": {"class": "vqvae", "params": TINY, "checkpoint": str(tmp_path / "external.pt"),
                                  "variants": ["base"]}},
           "train": {"steps": 2, "batch_size": 4}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    sel = ["--config", str(path), "--dataset", "shapes"]
    assert main(["data", "prepare", *sel]) == 0
    return external, path, sel


def test_frozen_checkpoint_is_adopted_without_training_and_encodes_like_the_original(setup):
    external, path, sel = setup
    run = [*sel, "--tokenizer", "ext", "--variant", "base", "--seed", "0"]
    assert main(["tokenizer", "train", *run]) == 0
    assert main(["tokenizer", "encode", *run]) == 0
    cfg = load_config(path)
    d = paths.tokenizer_dir(cfg["results_dir"], "shapes", "ext", "base", 0)
    payload = torch.load(d / "model.pt", weights_only=True)
    assert payload["steps"] == 0 and payload["frozen_from"].endswith("external.pt")
    assert not (d / "checkpoint.pt").exists()  # nothing was trained
    loaded = load_tokenizer(cfg, "shapes", "ext", "base", 0)
    for k, v in external.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    external.eval()
    assert torch.equal(loaded.encode_codes(x), external.encode_codes(x))
    codes = np.load(d / "codes" / "test.npy")
    assert codes.shape[1:] == (8, 8) and codes.max() < 32


def test_frozen_checkpoint_refuses_lg_variants_naming_the_key(setup, capsys):
    _, _, sel = setup
    rc = main(["tokenizer", "train", *sel, "--tokenizer", "ext", "--variant", "lg", "--seed", "0"])
    assert rc == 2 and "tokenizers.ext" in capsys.readouterr().err
