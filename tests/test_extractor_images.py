"""eval.shapes_cnn_images: the shapes-cnn extractor trains on images the embedded data's generator
draws for it alone (not the dataset's train split), with its own seed, and leaves nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lgvq.cli import main
from lgvq.config import load_config
from lgvq.errors import ConfigError
from lgvq.pipeline import jobs

CONFIG = {
    "name": "extractor-images",
    "device": "cpu",
    "seeds": [0],
    "datasets": {"shapes": {"source": "shapes", "synth": {"n": 20, "size": 16, "seed": 3}, "image_size": 16,
                            "eval_images": 2}},
    "tokenizers": {"vqvae": {"class": "vqvae", "params": {"ch": 8, "ch_mult": [1, 2], "num_res_blocks": 1,
                                                          "attn_resolutions": [], "z_channels": 8, "embed_dim": 8,
                                                          "n_embed": 16}}},
    "eval": {"shapes_cnn_epochs": 1},
}


def _config(tmp_path: Path, **eval_keys) -> Path:
    cfg = {"results_dir": str(tmp_path / "res"), **CONFIG, "eval": {**CONFIG["eval"], **eval_keys}}
    path = tmp_path / f"config-{len(eval_keys)}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _extractor_manifest(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "res/shapes/shapes_cnn/manifest.json").read_text())


def test_the_extractor_trains_on_its_own_drawn_images_and_removes_them(tmp_path):
    own = _config(tmp_path, shapes_cnn_images=60)
    sel = ["--config", str(own), "--dataset", "shapes"]
    assert main(["data", "prepare", *sel]) == 0
    killed = tmp_path / "res/shapes/shapes_cnn/.synthetic-killed/generated"  # what a killed job leaves behind
    killed.mkdir(parents=True)
    (killed / "partial.png").write_bytes(b"")
    assert main(["metrics", "train-extractor", *sel]) == 0
    m = _extractor_manifest(tmp_path)
    # 60 images, 10 % held out: the dataset's train split has 16 (20 x 0.8), so these are not its images
    assert m["heldout"]["heldout_images"] + m["heldout"]["train_images"] == 60
    assert m["synthetic_images"] == {"n": 60, "size": 16, "seed": 3 + 7919, "text_variant": False}
    left = [p.name for p in (tmp_path / "res/shapes/shapes_cnn").iterdir()]
    assert not [n for n in left if n.startswith(".synthetic-")], left  # the drawn images are gone
    assert main(["metrics", "train-extractor", "--config", str(_config(tmp_path)), "--dataset", "shapes"]) == 0
    m = _extractor_manifest(tmp_path)
    assert m["heldout"]["heldout_images"] + m["heldout"]["train_images"] == 16  # 0: the train split, as before
    assert "synthetic_images" not in m


def test_zero_keeps_the_extractor_hash_of_before_and_drawn_images_hash_what_draws_them(tmp_path):
    def hashed(**changes) -> str:
        cfg = load_config(_config(tmp_path, **changes.pop("eval", {})))
        for key, value in changes.items():
            cfg["datasets"]["shapes"]["synth"][key] = value
        return jobs.job_hash(jobs.feature_extractor(cfg, "shapes"))

    cfg = load_config(_config(tmp_path))  # the slice as it was before the key existed
    ev = cfg["eval"]
    before = {"images": {"data": jobs.data(cfg, "shapes"), "image_size": 16, "resize_mode": "resize"},
              "epochs": ev["shapes_cnn_epochs"], "seed": ev["mask_eval_seed"]}
    assert hashed() == jobs.job_hash(before)
    own = {"eval": {"shapes_cnn_images": 60}}
    assert hashed(**own) != hashed()
    assert hashed(**own, n=40) == hashed(**own)        # the dataset's size does not change the drawn images
    assert hashed(**own, seed=4) != hashed(**own)      # its seed does (the draw is seed + 7919)
    assert hashed(eval={"shapes_cnn_images": 80}) != hashed(**own)


@pytest.mark.parametrize("n, root, why", [(60, True, "draws images from the embedded data's generator"),
                                          (5, False, "too few to draw")])
def test_preflight_and_the_job_refuse_drawn_images_they_cannot_draw_naming_the_key(tmp_path, n, root, why):
    from lgvq.pipeline.evaluate import train_feature_extractor
    from lgvq.pipeline.preflight import problems

    cfg = load_config(_config(tmp_path, shapes_cnn_images=n))
    if root:
        cfg["datasets"]["shapes"]["root"] = str(tmp_path)  # a dataset read from disk: no generator to draw from
    assert [p for p in problems(cfg) if p.startswith(f"eval.shapes_cnn_images: {n} ") and why in p]
    with pytest.raises(ConfigError, match=f"eval.shapes_cnn_images: {n} .*{why}"):
        train_feature_extractor(cfg, "shapes")
