"""COCO-QA (questions and answers on COCO 2014 images)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from lgvq.data.base import QARecord
from lgvq.data.formats import read_cocoqa
from lgvq.data.sources.real import RealSource, coco_image_captions, ImageEntry
from lgvq.io import ArtifactError


class COCOQASource(RealSource):
    """COCO-QA on COCO 2014: root holds `cocoqa/{train,test}/` (the four parallel files of the
    official zip) next to the COCO 2014 layout (`train2014/`, `val2014/`, `annotations/`).
    test is both val and test. qa() needs only the cocoqa files; records() lists the images
    that have questions, with their COCO captions (both captions_*2014.json are required, so
    every record keeps the harness's one invariant: an image has captions)."""

    name = "cocoqa"

    def __init__(self, root: str | Path) -> None:
        super().__init__(root)
        self.qa_dir = self.root / "cocoqa"
        self._coco: dict[int, ImageEntry] | None = None

    def qa(self, split: str) -> list[QARecord]:
        return [QARecord(i, q, a, t) for q, a, i, t in read_cocoqa(self.qa_dir / self._key(split))]

    def _entries(self, key: str) -> Iterator[ImageEntry]:
        if self._coco is None:  # COCO-QA draws from both halves of COCO 2014
            self._coco = {**coco_image_captions(self.root, "train2014"), **coco_image_captions(self.root, "val2014")}
        ids_file = self.qa_dir / key / "img_ids.txt"
        for iid in dict.fromkeys(row[2] for row in read_cocoqa(self.qa_dir / key)):
            if iid not in self._coco:
                raise ArtifactError(f"image {iid} of {ids_file} is in neither {self.root / 'annotations'}"
                                    "/captions_train2014.json nor captions_val2014.json")
            yield self._coco[iid]
