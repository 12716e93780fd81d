"""The embedded dataset's source: the COCO-format files `lgvq data synth` writes (lgvq/data/synth.py).

Registered as "shapes" and "shapes-text" in the data registry's built-in table (lgvq/data/registry.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from lgvq.data.base import DatasetSource, ImageRecord, QARecord, RefRecord
from lgvq.io import ArtifactError, read_json


class ShapesSource(DatasetSource):
    """The embedded dataset written by `lgvq data synth` (COCO-format files, see synth.py)."""

    name = "shapes"

    def splits(self) -> list[str]:
        return ["train", "val", "test"]

    def has_label_maps(self) -> bool:
        return (self.root / "masks").is_dir()

    def _check_split(self, split: str) -> None:
        if split not in self.splits():
            raise ArtifactError(f"unknown split '{split}' for {self.root} (splits: {', '.join(self.splits())})")

    @lru_cache(maxsize=None)
    def records(self, split: str) -> list[ImageRecord]:
        from lgvq.data.formats import read_coco_captions

        self._check_split(split)
        cap_file = self.root / "annotations" / f"captions_{split}.json"
        images, caps = read_coco_captions(cap_file)
        attr_file = self.root / f"attributes_{split}.json"
        attrs = read_json(attr_file) if attr_file.is_file() else {}
        if not images:
            raise ArtifactError(f"empty split '{split}': {cap_file} lists no images")
        out = []
        for iid, im in images.items():
            if not caps[iid]:
                raise ArtifactError(f"image {iid} ({im['file_name']}) has no captions in {cap_file}")
            mask = self.root / "masks" / im["file_name"]
            out.append(ImageRecord(iid, self.root / "images" / split / im["file_name"], tuple(caps[iid]),
                                   mask if mask.is_file() else None, attrs.get(str(iid))))
        return out

    def qa(self, split: str) -> list[QARecord]:
        from lgvq.data.formats import read_cocoqa

        self._check_split(split)
        return [QARecord(i, q, a, t) for q, a, i, t in read_cocoqa(self.root / "cocoqa" / split)]

    def refs(self, split: str) -> Sequence[RefRecord]:
        self._check_split(split)
        return self._refs_by_split().get(split, [])

    @lru_cache(maxsize=None)
    def _refs_by_split(self) -> dict[str, Sequence[RefRecord]]:  # all splits in one parse of the two files
        from lgvq.data.formats import read_ref_records

        return read_ref_records(self.root / "refcocog" / "refs(umd).p", self.root / "refcocog" / "instances.json")
