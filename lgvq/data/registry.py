"""Dataset sources: a name -> a reader of one on-disk layout (embedded or real).

A `DatasetSource` (lgvq/data/base.py; its record classes and it are importable from here too)
lists, per split, image records (path, captions, optional label map and ground-truth attributes)
and the task annotations (COCO-QA questions, referring expressions).

The embedded dataset's reader (`ShapesSource`) is defined here. The real datasets' readers live in
lgvq/data/sources/ and are named in `BUILTIN` below as "module:Class" import paths: one is
imported the first time its name is asked for, so the sources depend on the base classes and
never on this module. Other sources register with `register_dataset`, with the same interface
(a name registered that way takes precedence over a built-in one).
"""

from __future__ import annotations

import importlib
import inspect
from functools import lru_cache
from pathlib import Path
from typing import Callable

from lgvq.data.base import DatasetSource, ImageRecord, QARecord, RefRecord
from lgvq.io import ArtifactError, read_json

# The real datasets' sources, imported on first use (see the module docstring).
BUILTIN: dict[str, str] = {
    "cub": "lgvq.data.sources.cub:CUBSource",
    "mmceleba": "lgvq.data.sources.celeba:MMCelebASource",
    "textcaps": "lgvq.data.sources.textcaps:TextCapsSource",
    "coco": "lgvq.data.sources.coco:COCOSource",
    "cocoqa": "lgvq.data.sources.cocoqa:COCOQASource",
    "refcocog": "lgvq.data.sources.refcocog:RefCOCOgSource",
}

_REGISTRY: dict[str, Callable[[Path], DatasetSource]] = {}


def register_dataset(name: str):
    def deco(factory):
        _REGISTRY[name] = factory
        return factory

    return deco


def list_datasets() -> list[str]:
    return sorted(set(_REGISTRY) | set(BUILTIN))


def _factory(name: str) -> Callable[[Path], DatasetSource] | None:
    """The factory registered as `name`; a built-in source is imported here on first use."""
    if name not in _REGISTRY and name in BUILTIN:
        module, cls = BUILTIN[name].split(":")
        _REGISTRY[name] = getattr(importlib.import_module(module), cls)
    return _REGISTRY.get(name)


def get_source(name: str, root: str | Path, cache_dir: str | Path | None = None) -> DatasetSource:
    """The source `name` reading `root`; `cache_dir` (only for sources that derive files, such as
    MM-CelebA-HQ's merged label maps) says where derived files go."""
    factory = _factory(name)
    if factory is None:
        raise ArtifactError(f"unknown dataset source '{name}' (registered: {', '.join(list_datasets())})")
    if cache_dir is None:
        return factory(Path(root))
    if not accepts_cache_dir(name):
        raise ArtifactError(f"dataset source '{name}' writes no derived files: a cache_dir does not apply to it")
    return factory(Path(root), cache_dir=Path(cache_dir).expanduser())


def accepts_cache_dir(name: str) -> bool:
    """Whether source `name` derives files (and so takes a `cache_dir`)."""
    factory = _factory(name)
    return factory is not None and "cache_dir" in inspect.signature(factory).parameters


@register_dataset("shapes")
@register_dataset("shapes-text")
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
