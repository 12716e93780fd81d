"""RefCOCOg, umd split (referring expressions on COCO train2014 images)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

from lgvq.data.base import RefRecord
from lgvq.data.formats import read_ref_records
from lgvq.data.sources.real import RealSource, coco_image_captions, ImageEntry
from lgvq.io import ArtifactError


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
        self._refs: dict[str, Sequence[RefRecord]] | None = None
        self._coco: dict[int, ImageEntry] | None = None

    def _load(self) -> dict[str, Sequence[RefRecord]]:
        """Every umd split's expressions, the two files parsed once per source."""
        if self._refs is None:
            self._refs = read_ref_records(self.ref_dir / "refs(umd).p", self.ref_dir / "instances.json")
        return self._refs

    def refs(self, split: str) -> Sequence[RefRecord]:
        return self._load().get(self._key(split), [])

    def _entries(self, key: str) -> Iterator[ImageEntry]:
        if self._coco is None:  # RefCOCOg images are all COCO train2014 images
            self._coco = coco_image_captions(self.root, "train2014")
        coco = self._coco
        for iid in dict.fromkeys(r.image_id for r in self._load().get(key, [])):
            if iid not in coco:
                raise ArtifactError(f"image {iid} of {self.ref_dir / 'refs(umd).p'} is not in "
                                    f"{self.root / 'annotations' / 'captions_train2014.json'}")
            yield coco[iid]
