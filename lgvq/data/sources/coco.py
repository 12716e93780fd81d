"""MS-COCO 2014 captions; the same root may also serve COCO-QA and RefCOCOg annotations."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import ClassVar

from lgvq.data.base import QARecord, RefRecord
from lgvq.data.sources.cocoqa import COCOQASource
from lgvq.data.sources.real import RealSource, coco_image_captions, ImageEntry
from lgvq.data.sources.refcocog import RefCOCOgSource


class COCOSource(RealSource):
    """MS-COCO 2014 captions: `train2014/`, `val2014/`, `annotations/captions_{train,val}2014.json`.
    train = train2014; val2014 is both val and test (the paper names no test split). One record per
    image with all its captions (the authors iterate per caption; we draw one per access)."""

    name = "coco"
    split_files: ClassVar[dict[str, str]] = {"train": "train2014", "val": "val2014", "test": "val2014"}

    def _entries(self, key: str) -> Iterator[ImageEntry]:
        yield from coco_image_captions(self.root, key).values()

    # The paper runs VQA (COCO-QA) and grounding (RefCOCOg) with the MS-COCO codebook: when the
    # root also holds `cocoqa/` or `refcocog/` (both on COCO 2014 images), the coco source
    # serves their annotations, so the heads read the codes of the tokenizer trained on COCO.
    def has_qa(self) -> bool:
        return (self.root / "cocoqa").is_dir()

    def has_refs(self) -> bool:
        return (self.root / "refcocog").is_dir()

    def qa(self, split: str) -> list[QARecord]:
        if not (self.root / "cocoqa").is_dir():
            return super().qa(split)
        return COCOQASource(self.root).qa(split)

    def refs(self, split: str) -> Sequence[RefRecord]:
        if not (self.root / "refcocog").is_dir():
            return super().refs(split)
        return RefCOCOgSource(self.root).refs(split)
