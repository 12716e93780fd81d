"""A dataset's splits written once at the training resolution, so an epoch decodes small PNGs
instead of full-size JPEGs (CelebA-HQ: 1024 px images for 256 px training).

Each image goes through the same geometry the training dataset applies first (lgvq.data.dataset):
"resize" makes it S x S, "resize_crop" scales its short side to S and keeps the aspect ratio (the
random crop and flip stay per epoch). It is stored losslessly (PNG), so the dataset's own resize of
a prepared image is the identity and its pixels equal those of a run on the originals: the prepared
split changes how fast images are read, never what is trained on. Label maps are not rewritten
(every reader resizes them itself, nearest-neighbour, from the original).

Layout under `out`: `<split>/<image id>.png`, `<split>.json` (image id -> file, written once the
split is complete) and `manifest.json` (size, mode, draft, source root, counts). Writes are atomic
and an existing image is kept, so an interrupted preparation resumes where it stopped.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from PIL import Image

from lgvq.data.base import DatasetSource, ImageRecord
from lgvq.io import ArtifactError, atomic_path, atomic_write_json, read_json

MANIFEST = "manifest.json"
SETTINGS = "settings.json"  # written first: what the images already under `out` were made with


def resized_geometry(im: Image.Image, size: int, resize_mode: str) -> Image.Image:
    """The first step of ImageTextDataset._geometry (the same arithmetic), without the crop."""
    if resize_mode == "resize":
        return im.resize((size, size), Image.BICUBIC)
    w, h = im.size
    scale = size / min(w, h)
    return im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)


def write_resized(source: DatasetSource, out: Path, *, size: int, resize_mode: str, jpeg_draft: bool) -> Path:
    """Write every split of `source` at `size` under `out` (layout: module docstring); returns the manifest."""
    from lgvq.data.dataset import load_rgb

    settings = {"size": size, "resize_mode": resize_mode, "jpeg_draft": jpeg_draft, "root": str(source.root)}
    if (out / MANIFEST).is_file() and {k: read_json(out / MANIFEST).get(k) for k in settings} == settings:
        return out / MANIFEST
    # Images kept from an interrupted preparation must be of these settings, else they all go.
    begun = out / SETTINGS
    if begun.is_file() and read_json(begun) != settings:
        shutil.rmtree(out)
    atomic_write_json(begun, settings)
    counts = {}
    for split in source.splits():
        files = {}
        for rec in source.records(split):
            rel = f"{split}/{rec.image_id}.png"
            if not (out / rel).is_file():  # atomic writes: a file that exists is complete
                im = load_rgb(rec.path, (size, size) if jpeg_draft else None)
                with atomic_path(out / rel) as tmp:
                    resized_geometry(im, size, resize_mode).save(tmp, format="png", compress_level=1)
            files[str(rec.image_id)] = rel
        atomic_write_json(out / f"{split}.json", {"split": split, "files": files})
        counts[split] = len(files)
    atomic_write_json(out / MANIFEST, {**settings, "counts": counts})
    return out / MANIFEST


class ResizedSource(DatasetSource):
    """`base`'s records and annotations, with each image path pointing at its prepared copy."""

    def __init__(self, base: DatasetSource, out: Path, *, size: int, resize_mode: str, jpeg_draft: bool,
                 key: str) -> None:
        self.base, self.out, self.key = base, Path(out), key
        self.name, self.root = base.name, base.root
        manifest = self.out / MANIFEST
        if not manifest.is_file():
            raise ArtifactError(f"{key}: true, but {manifest} is missing: run `lgvq data prepare` for this dataset")
        got = read_json(manifest)
        want = {"size": size, "resize_mode": resize_mode, "jpeg_draft": jpeg_draft, "root": str(base.root)}
        if {k: got.get(k) for k in want} != want:
            raise ArtifactError(f"{key}: {manifest} was prepared for {({k: got.get(k) for k in want})}, not {want}: "
                                "run `lgvq data prepare` again")

    def splits(self) -> list[str]:
        return self.base.splits()

    def records(self, split: str) -> list[ImageRecord]:
        index = self.out / f"{split}.json"
        if not index.is_file():
            raise ArtifactError(f"{self.key}: {index} is missing (split '{split}' not prepared)")
        files: dict[str, Any] = read_json(index)["files"]
        recs = self.base.records(split)
        missing = [r.image_id for r in recs if str(r.image_id) not in files]
        if missing:
            raise ArtifactError(f"{self.key}: {index} lacks {len(missing)} images of split '{split}' "
                                f"(first: {missing[0]}): run `lgvq data prepare` again")
        return [replace(r, path=self.out / files[str(r.image_id)]) for r in recs]

    def has_qa(self) -> bool:
        return self.base.has_qa()

    def has_refs(self) -> bool:
        return self.base.has_refs()

    def qa(self, split: str):
        return self.base.qa(split)

    def refs(self, split: str):
        return self.base.refs(split)
