"""Bad-input catalogue, data and layout errors (issue 12): a broken image, annotation file, split or
label map, or data that were never prepared, is named by its file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bad_inputs_kit import catalogue, Env, p, set_key

from lgvq.io import ArtifactError

CASES, case = catalogue()


def _train_images(e: Env) -> list[Path]:
    return sorted((e.data / "images" / "train").iterdir())


@case
def unreadable_image(e: Env) -> None:
    bad = _train_images(e)[3]
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    e.cli("tokenizer", "encode", expect=f"unreadable image {p(bad)}",
          protect=(e.tok / "codes" / "train.npy", e.tok / "model.pt"))


@case
def image_without_captions(e: Env) -> None:
    ann = e.data / "annotations" / "captions_val.json"
    coco = json.loads(ann.read_text())
    lonely = coco["images"][0]
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] != lonely["id"]]
    ann.write_text(json.dumps(coco))
    e.cli("data", "prepare", patch=set_key("datasets.shapes.root", str(e.data)), run=["--dataset", "shapes"],
          expect=rf"image {lonely['id']} \({lonely['file_name']}\) has no captions in {p(ann)}",
          protect=(e.res / "data" / "prepared.json",))


@case
def empty_split(e: Env) -> None:
    ann = e.data / "annotations" / "captions_test.json"
    ann.write_text(json.dumps({"images": [], "annotations": []}))
    e.cli("data", "prepare", patch=set_key("datasets.shapes.root", str(e.data)), run=["--dataset", "shapes"],
          expect=f"empty split 'test': {p(ann)} lists no images", protect=(e.res / "data" / "prepared.json",))


@case
def label_map_with_another_aspect_ratio(e: Env) -> None:
    from PIL import Image

    from lgvq.data.dataset import ImageTextDataset
    from lgvq.data.registry import get_source

    records = get_source("shapes", e.data).records("train")
    rec = records[0]
    Image.new("L", (16, 8)).save(rec.mask_path)  # the image is 16x16
    ds = ImageTextDataset(records, image_size=16, train=True, resize_mode="resize_crop", load_masks=True)
    with pytest.raises(ArtifactError, match=rf"label map {p(rec.mask_path)} is 16x8 but its image {p(rec.path)} is 16x16"):
        ds[0]
    Image.new("L", (8, 8)).save(rec.mask_path)  # same aspect ratio, lower resolution: accepted
    assert ds[0]["mask"].shape == (16, 16)


@case
def data_not_prepared(e: Env) -> None:
    marker = e.res / "data" / "prepared.json"
    marker.unlink()
    e.cli("tokenizer", "train", expect=f"{p(marker)} is missing: run `lgvq data prepare", protect=(e.tok / "checkpoint.pt",))


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, env):
    CASES[name](env)
