"""RefCOCOg, umd split (referring expressions on COCO train2014 images)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from lgvq.data.base import RefRecord
from lgvq.data.formats import read_refs
from lgvq.data.sources.real import RealSource, coco_image_captions, ImageEntry
from lgvq.io import ArtifactError, read_json


class RefCOCOgSource(RealSource):
    """RefCOCOg, umd split: `refcocog/refs(umd).p` and `refcocog/instances.json` (the refer
    toolkit's layout) in root, over COCO `train2014/` images in root. Splits train/val/test
    are the umd ones. refs() gives one RefRecord per expression with its object's COCO box
    (x, y, w, h); records() the referenced images with their COCO captions
    (`annotations/captions_train2014.json`, required)."""

    name = "refcocog"
    split_files: ClassVar[dict[str, str]] = {"train": "train", "val": "val", "test": "test"}

    def __init__(self, root: str | Path) -> None:
        super().__init__(root)
        self.ref_dir = self.root / "refcocog"
        self._refs: list[dict] | None = None
        self._boxes: dict[int, tuple[float, float, float, float]] | None = None
        self._coco: dict[int, ImageEntry] | None = None

    def _load(self) -> tuple[list[dict], dict[int, tuple[float, float, float, float]]]:
        if self._refs is None or self._boxes is None:
            path = self.ref_dir / "refs(umd).p"
            try:
                self._refs = read_refs(path)
            except UnicodeDecodeError as e:  # a Python 2 byte string that is not ASCII
                raise ArtifactError(f"cannot decode refs pickle {path}: {e}") from e
            inst = read_json(self.ref_dir / "instances.json")
            self._boxes = {int(a["id"]): tuple(float(v) for v in a["bbox"])  # type: ignore[misc]
                           for a in inst.get("annotations", [])}
        return self._refs, self._boxes

    def refs(self, split: str) -> list[RefRecord]:
        key = self._key(split)
        refs, boxes = self._load()
        out = []
        for ref in refs:
            if ref.get("split") != key:
                continue
            if int(ref["ann_id"]) not in boxes:
                raise ArtifactError(f"ref {ref['ref_id']}: object {ref['ann_id']} is not in "
                                    f"{self.ref_dir / 'instances.json'}")
            box = boxes[int(ref["ann_id"])]
            out += [RefRecord(int(ref["ref_id"]), int(ref["image_id"]), str(s["sent"]), box) for s in ref["sentences"]]
        return out

    def _entries(self, key: str) -> Iterator[ImageEntry]:
        if self._coco is None:  # RefCOCOg images are all COCO train2014 images
            self._coco = coco_image_captions(self.root, "train2014")
        coco = self._coco
        refs, _ = self._load()
        for iid in dict.fromkeys(int(r["image_id"]) for r in refs if r.get("split") == key):
            if iid not in coco:
                raise ArtifactError(f"image {iid} of {self.ref_dir / 'refs(umd).p'} is not in "
                                    f"{self.root / 'annotations' / 'captions_train2014.json'}")
            yield coco[iid]
