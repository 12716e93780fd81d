"""Dataset sources: a name -> a reader of one on-disk layout (embedded or real).

A `DatasetSource` lists, per split, image records (path, captions, optional label map and
ground-truth attributes) and the task annotations (COCO-QA questions, referring expressions).
Real-dataset adapters register here under their own names with the same interface.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

from lgvq.io import ArtifactError, read_json


@dataclass(frozen=True)
class ImageRecord:
    image_id: int
    path: Path
    captions: tuple[str, ...]
    mask_path: Path | None = None
    attributes: dict | None = None


@dataclass(frozen=True)
class QARecord:
    image_id: int
    question: str
    answer: str
    qtype: int


@dataclass(frozen=True)
class RefRecord:
    ref_id: int
    image_id: int
    sentence: str
    bbox_xywh: tuple[float, float, float, float]


class DatasetSource(ABC):
    name: str

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ArtifactError(f"dataset root not found: {self.root}")

    @abstractmethod
    def splits(self) -> list[str]: ...

    @abstractmethod
    def records(self, split: str) -> list[ImageRecord]: ...

    def has_qa(self) -> bool:
        return type(self).qa is not DatasetSource.qa

    def has_refs(self) -> bool:
        return type(self).refs is not DatasetSource.refs

    def qa(self, split: str) -> list[QARecord]:
        raise ArtifactError(f"dataset '{self.name}' at {self.root} has no question-answer annotations")

    def refs(self, split: str) -> list[RefRecord]:
        raise ArtifactError(f"dataset '{self.name}' at {self.root} has no referring expressions")


_REGISTRY: dict[str, Callable[[Path], DatasetSource]] = {}


def register_dataset(name: str):
    def deco(factory):
        _REGISTRY[name] = factory
        return factory

    return deco


def list_datasets() -> list[str]:
    return sorted(_REGISTRY)


def get_source(name: str, root: str | Path, cache_dir: str | Path | None = None) -> DatasetSource:
    """The source `name` reading `root`; `cache_dir` (only for sources that derive files, such as
    MM-CelebA-HQ's merged label maps) says where derived files go."""
    if name not in _REGISTRY:
        raise ArtifactError(f"unknown dataset source '{name}' (registered: {', '.join(list_datasets())})")
    factory = _REGISTRY[name]
    if cache_dir is None:
        return factory(Path(root))
    if not accepts_cache_dir(name):
        raise ArtifactError(f"dataset source '{name}' writes no derived files: a cache_dir does not apply to it")
    return factory(Path(root), cache_dir=Path(cache_dir).expanduser())


def accepts_cache_dir(name: str) -> bool:
    """Whether source `name` derives files (and so takes a `cache_dir`)."""
    return name in _REGISTRY and "cache_dir" in inspect.signature(_REGISTRY[name]).parameters


@register_dataset("shapes")
@register_dataset("shapes-text")
class ShapesSource(DatasetSource):
    """The embedded dataset written by `lgvq data synth` (COCO-format files, see synth.py)."""

    name = "shapes"

    def splits(self) -> list[str]:
        return ["train", "val", "test"]

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

    def refs(self, split: str) -> list[RefRecord]:
        from lgvq.data.formats import read_coco_instances, read_refs

        self._check_split(split)
        boxes = {a["id"]: a["bbox"] for anns in read_coco_instances(self.root / "refcocog" / "instances.json").values()
                 for a in anns}
        out = []
        for ref in read_refs(self.root / "refcocog" / "refs(umd).p"):
            if ref["split"] != split:
                continue
            for s in ref["sentences"]:
                out.append(RefRecord(int(ref["ref_id"]), int(ref["image_id"]), s["sent"],
                                     tuple(float(v) for v in boxes[ref["ann_id"]])))
        return out


# Real-dataset adapters register themselves on import; imported last because they subclass
# the classes above.
from lgvq.data import adapters as _adapters  # noqa: F401
