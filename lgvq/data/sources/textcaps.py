"""TextCaps 0.1 (captions on Open Images with text in them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from lgvq.data.sources.real import RealSource, ImageEntry, first_existing
from lgvq.io import ArtifactError, read_json


def textcaps_int_id(image_id: str) -> int:
    """TextCaps ids are 16 hex digits (Open Images ids); keep the low 63 bits so they fit int64
    code files. Two ids colliding needs equal low 63 bits: checked per split, never seen."""
    try:
        return int(image_id, 16) & ((1 << 63) - 1)
    except ValueError as e:
        raise ArtifactError(f"TextCaps image id {image_id!r} is not hexadecimal") from e


class TextCapsSource(RealSource):
    """TextCaps 0.1: `TextCaps_0.1_{train,val}.json` (in root or root/annotations/), images in
    `train_images/` (the val images are there too). The official test JSON has no captions, so
    val is both val and test. One JSON entry per caption; entries are grouped per image."""

    name = "textcaps"
    split_files: ClassVar[dict[str, str]] = {"train": "train", "val": "val", "test": "val"}

    def _entries(self, key: str) -> Iterator[ImageEntry]:
        name = f"TextCaps_0.1_{key}.json"
        path = first_existing([self.root / name, self.root / "annotations" / name], f"TextCaps {key} annotations")
        data = read_json(path)
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise ArtifactError(f"{path}: not a TextCaps file (no 'data' list)")
        grouped: dict[int, ImageEntry] = {}
        hex_of: dict[int, str] = {}
        for k, item in enumerate(data["data"]):
            if "image_id" not in item:
                raise ArtifactError(f"{path}: entry {k} has no image_id")
            hid = str(item["image_id"])
            iid = textcaps_int_id(hid)
            if hex_of.setdefault(iid, hid) != hid:
                raise ArtifactError(f"{path}: image ids {hex_of[iid]} and {hid} collide in 63 bits")
            if iid not in grouped:
                # "image_path" is "train/<id>.jpg" (Open Images' folder); the files live in train_images/
                fname = (Path(item["image_path"]).name if item.get("image_path")
                         else f"{item.get('image_name', hid)}.jpg")
                grouped[iid] = ImageEntry(iid, self.root / "train_images" / fname, [], path)
            if item.get("caption_str"):
                grouped[iid].captions.append(str(item["caption_str"]).strip())  # type: ignore[union-attr]
        yield from grouped.values()
