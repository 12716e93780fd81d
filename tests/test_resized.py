"""Fast image input at paper scale: JPEGs decoded at reduced size (datasets.<name>.jpeg_draft), and
splits prepared once at the training resolution (datasets.<name>.prepare_resized) whose pixels, after
the dataset's geometry, equal those of the originals."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import yaml
from PIL import Image, ImageDraw

from lgvq.cli import main
from lgvq.config import load_config
from lgvq.data.base import DatasetSource, ImageRecord
from lgvq.data.dataset import ImageTextDataset, load_rgb
from lgvq.data.resized import ResizedSource, write_resized
from lgvq.io import ArtifactError
from lgvq.pipeline import paths
from lgvq.pipeline.common import dataset_source, image_source


def smooth_image(w: int, h: int) -> Image.Image:
    """A photo-like test picture: gradients and a few filled shapes (no pixel noise)."""
    x, y = np.meshgrid(np.linspace(0, 1, w), np.linspace(0, 1, h))
    im = Image.fromarray((np.stack([x, y, (x + y) / 2], -1) * 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    d.ellipse((w * 0.2, h * 0.2, w * 0.6, h * 0.7), fill=(200, 40, 60))
    d.rectangle((w * 0.55, h * 0.1, w * 0.9, h * 0.5), fill=(30, 160, 90))
    return im


def test_a_1024px_jpeg_read_for_256px_is_drafted_and_close_to_the_full_decode(tmp_path):
    path = tmp_path / "big.jpg"
    smooth_image(1024, 1024).save(path, quality=90)
    assert load_rgb(path).size == (1024, 1024)
    assert load_rgb(path, (256, 256)).size == (256, 256)  # libjpeg decoded at 1/4 scale
    rec = [ImageRecord(0, path, ("a picture",))]
    full = ImageTextDataset(rec, image_size=256, train=False)[0]["image"]
    drafted = ImageTextDataset(rec, image_size=256, train=False, jpeg_draft=True)[0]["image"]
    assert not torch.equal(full, drafted)
    assert (full - drafted).abs().mean() < 0.02  # in [-1, 1] units: about 2 grey levels of 255


@pytest.mark.parametrize("name,size,target", [("small.jpg", (300, 300), 256), ("pic.png", (1024, 1024), 256)])
def test_without_a_possible_draft_the_output_is_that_of_a_full_decode(tmp_path, name, size, target):
    """A JPEG less than twice the target cannot be reduced; other formats are never drafted."""
    path = tmp_path / name
    smooth_image(*size).save(path)
    rec = [ImageRecord(0, path, ("a picture",))]
    for mode in ("resize", "resize_crop"):
        full = ImageTextDataset(rec, image_size=target, train=True, resize_mode=mode, seed=1)[0]["image"]
        drafted = ImageTextDataset(rec, image_size=target, train=True, resize_mode=mode, seed=1, jpeg_draft=True)[0]
        assert torch.equal(full, drafted["image"])


class Folder(DatasetSource):
    """Two splits of non-square JPEGs (landscape and portrait)."""

    name = "folder"

    def splits(self):
        return ["train", "test"]

    def records(self, split):
        files = sorted(self.root.glob(f"{split}_*.jpg"))
        return [ImageRecord(i, f, (f"image {i}",)) for i, f in enumerate(files)]


def folder(tmp_path) -> Folder:
    root = tmp_path / "src"
    root.mkdir()
    for split, sizes in (("train", [(96, 64), (64, 80), (70, 70)]), ("test", [(128, 100)])):
        for i, wh in enumerate(sizes):
            smooth_image(*wh).save(root / f"{split}_{i}.jpg", quality=85)
    return Folder(root)


@pytest.mark.parametrize("mode", ["resize", "resize_crop"])
def test_a_prepared_split_gives_the_pixels_of_the_originals(tmp_path, mode):
    src = folder(tmp_path)
    write_resized(src, tmp_path / "out", size=32, resize_mode=mode, jpeg_draft=False)
    prepared = ResizedSource(src, tmp_path / "out", size=32, resize_mode=mode, jpeg_draft=False, key="k")
    for split in src.splits():
        recs = prepared.records(split)
        assert all(r.path.suffix == ".png" and r.path.parent == tmp_path / "out" / split for r in recs)
        assert all(min(Image.open(r.path).size) == 32 for r in recs)  # at the training resolution
        for epoch in (0, 3):  # random crops and flips of resize_crop stay per epoch
            a = ImageTextDataset(src.records(split), image_size=32, train=True, resize_mode=mode, seed=2)
            b = ImageTextDataset(recs, image_size=32, train=True, resize_mode=mode, seed=2)
            a.set_epoch(epoch), b.set_epoch(epoch)
            for i in range(len(a)):
                assert torch.equal(a[i]["image"], b[i]["image"]) and a[i]["caption"] == b[i]["caption"]


def test_preparation_resumes_and_starts_over_when_its_settings_change(tmp_path):
    src = folder(tmp_path)
    out = tmp_path / "out"
    write_resized(src, out, size=32, resize_mode="resize", jpeg_draft=False)
    kept, lost = out / "train" / "0.png", out / "train" / "1.png"
    os.utime(kept, (1, 1))
    lost.unlink()
    (out / "manifest.json").unlink()  # as if killed before the manifest was written
    write_resized(src, out, size=32, resize_mode="resize", jpeg_draft=False)
    assert lost.is_file() and kept.stat().st_mtime == 1  # only the missing image was written
    with pytest.raises(ArtifactError, match="k: .*prepared for"):
        ResizedSource(src, out, size=48, resize_mode="resize", jpeg_draft=False, key="k")
    write_resized(src, out, size=48, resize_mode="resize", jpeg_draft=False)
    assert Image.open(kept).size == (48, 48) and kept.stat().st_mtime != 1
    with pytest.raises(ArtifactError, match="k: true, but .*manifest.json is missing"):
        ResizedSource(src, tmp_path / "nowhere", size=32, resize_mode="resize", jpeg_draft=False, key="k")


def _config(tmp_path, name, **dataset):
    cfg = {"results_dir": str(tmp_path / name), "device": "cpu",
           "datasets": {"shapes": {"source": "shapes", "synth": {"n": 20, "size": 32}, "image_size": 16,
                                   "eval_images": 4, **dataset}},
           "tokenizers": {"vqvae": {"class": "vqvae", "params": dict(
               ch=8, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[], z_channels=8, embed_dim=8, n_embed=32)}},
           "train": {"steps": 3, "batch_size": 4, "lr": 1e-3, "ckpt_every": 2}, "data": {"loader_workers": 1}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow  # three CLI runs (about 50 s on the shared 2-core machine)
def test_data_prepare_writes_the_resized_split_and_training_and_encoding_read_it(tmp_path):
    path = _config(tmp_path, "prep", prepare_resized=True)
    sel = ["--config", str(path), "--dataset", "shapes"]
    run = [*sel, "--tokenizer", "vqvae", "--variant", "base", "--seed", "0"]
    assert main(["data", "prepare", *sel]) == 0
    cfg = load_config(path)
    assert (paths.resized_dir(cfg["results_dir"], "shapes") / "manifest.json").is_file()
    for split in ("train", "test"):
        prepared, originals = image_source(cfg, "shapes").records(split), dataset_source(cfg, "shapes").records(split)
        assert all(Image.open(r.path).size == (16, 16) for r in prepared)  # generated at 32 px, prepared at 16
        assert prepared[0].path != originals[0].path  # the other stages keep reading the originals
        a = ImageTextDataset(originals, image_size=16, train=False)
        b = ImageTextDataset(prepared, image_size=16, train=False)
        assert all(torch.equal(a[i]["image"], b[i]["image"]) for i in range(len(a)))  # so the same codes
    assert main(["tokenizer", "train", *run]) == 0
    assert main(["tokenizer", "encode", *run]) == 0
    codes = paths.tokenizer_dir(cfg["results_dir"], "shapes", "vqvae", "base", 0) / "codes" / "test.npy"
    assert np.load(codes).shape[0] == len(image_source(cfg, "shapes").records("test"))
    (paths.resized_dir(cfg["results_dir"], "shapes") / "test.json").unlink()
    assert main(["tokenizer", "encode", *run]) == 2  # a half-prepared split is named, not read around


def test_which_job_hashes_the_input_settings_reach():
    from lgvq.config import config_hash, tokenizer_job_slice, validate_config
    from lgvq.pipeline import jobs

    base = {"datasets": {"shapes": {"source": "shapes"}}, "tokenizers": {"vqgan": {"class": "vqgan"}}}

    def with_(data=None, **ds):
        return validate_config({**base, "datasets": {"shapes": {"source": "shapes", **ds}}, "data": data or {}})

    def tok(cfg):
        return config_hash(tokenizer_job_slice(cfg, "shapes", "vqgan", "base", 0))

    plain = with_()
    assert tok(with_(jpeg_draft=False)) == tok(plain)  # off is the hash of before the key existed
    assert tok(with_(jpeg_draft=True)) != tok(plain)  # other pixels
    assert tok(with_(prepare_resized=True)) == tok(plain)  # the same pixels
    assert jobs.data(with_(prepare_resized=True), "shapes") != jobs.data(plain, "shapes")  # prepare_data re-runs
    assert tok(with_({"loader_workers": 3, "prefetch": 4})) == tok(plain)  # how images are fed, not which
