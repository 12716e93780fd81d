"""Dataset sources: a name -> a reader of one on-disk layout (embedded or real).

A `DatasetSource` (lgvq/data/base.py; its record classes and it are importable from here too)
lists, per split, image records (path, captions, optional label map and ground-truth attributes)
and the task annotations (COCO-QA questions, referring expressions).

`DATASETS` is a `lgvq.registry.Registry`, like the tokenizers, text encoders and tasks: the
built-in sources (the embedded dataset's in lgvq/data/sources/shapes.py, the real datasets' in
lgvq/data/sources/) are "module:Class" import paths, imported the first time their name is asked
for, so the sources depend on the base classes and never on this module. A source outside
`lgvq/` registers in a module listed under the config's `plugins:`, with the same interface:

    from lgvq.data.registry import register_dataset     # or: @DATASETS.register("mine")

    @register_dataset("mine")
    class MySource(DatasetSource): ...

A built-in name cannot be registered again (register under another name).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable

from lgvq.data.base import DatasetSource, ImageRecord, QARecord, RefRecord
from lgvq.io import ArtifactError
from lgvq.registry import Registry

__all__ = ["DATASETS", "GENERATED_SOURCES", "DatasetSource", "ImageRecord", "QARecord", "RefRecord",
           "accepts_cache_dir", "get_source", "list_datasets", "register_dataset"]

# The sources by registry name (a dataset entry's `source:`), imported on first use (see the module docstring).
DATASETS = Registry("dataset source", "datasets.<name>.source", {
    "shapes": "lgvq.data.sources.shapes:ShapesSource",
    "shapes-text": "lgvq.data.sources.shapes:ShapesSource",
    "cub": "lgvq.data.sources.cub:CUBSource",
    "mmceleba": "lgvq.data.sources.celeba:MMCelebASource",
    "textcaps": "lgvq.data.sources.textcaps:TextCapsSource",
    "coco": "lgvq.data.sources.coco:COCOSource",
    "cocoqa": "lgvq.data.sources.cocoqa:COCOQASource",
    "refcocog": "lgvq.data.sources.refcocog:RefCOCOgSource",
}, instantiate=False)
GENERATED_SOURCES = ("shapes", "shapes-text")  # the sources `lgvq data prepare` can generate (root: null)


def register_dataset(name: str) -> Callable[[Any], Any]:
    """Decorator registering a source class (or any `factory(root, [cache_dir=])`) as `name`."""
    return DATASETS.register(name)


def list_datasets() -> list[str]:
    return sorted(DATASETS.names())


def get_source(name: str, root: str | Path, cache_dir: str | Path | None = None) -> DatasetSource:
    """The source `name` reading `root`; `cache_dir` (only for sources that derive files, such as
    MM-CelebA-HQ's merged label maps) says where derived files go."""
    if name not in DATASETS:
        raise ArtifactError(f"unknown dataset source '{name}' (registered: {', '.join(list_datasets())})")
    factory = DATASETS.get(name)
    if cache_dir is None:
        return factory(Path(root))
    if not accepts_cache_dir(name):
        raise ArtifactError(f"dataset source '{name}' writes no derived files: a cache_dir does not apply to it")
    return factory(Path(root), cache_dir=Path(cache_dir).expanduser())


def accepts_cache_dir(name: str) -> bool:
    """Whether source `name` derives files (and so takes a `cache_dir`)."""
    return name in DATASETS and "cache_dir" in inspect.signature(DATASETS.get(name)).parameters
