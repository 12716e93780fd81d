"""MM-CelebA-HQ + CelebAMask-HQ: captions, and label maps merged from the part masks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from lgvq.data.sources.real import (
    Problem,
    RealSource,
    Scan,
    ImageEntry,
    first_existing,
    read_caption_lines,
    read_name_list,
)
from lgvq.io import ArtifactError, atomic_path

# CelebAMask-HQ's part order; label = index + 1 (0 = background), later parts paint over earlier
# ones, as in the dataset's own merging script.
CELEBAMASK_PARTS = ("skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear", "mouth",
                    "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth")
LABELMAP_CACHE_ENV = "LGVQ_LABELMAP_CACHE"


class MMCelebASource(RealSource):
    """MM-CelebA-HQ: `CelebA-HQ-img/<id>.jpg` (or the authors' `images/`, or `CelebAMask-HQ/CelebA-HQ-img/` as
    `CelebAMask-HQ.zip` unpacks beside the captions), `celeba-caption/<id>.txt`,
    split lists `train/filenames.pickle` and `test/filenames.pickle` (or `train.txt` / `test.txt`,
    one name per line). test is both val and test.

    Label maps (optional): when `CelebAMask-HQ-mask-anno/` is in root (or in root/CelebAMask-HQ/),
    each image's part PNGs `<id // 2000>/<id:05d>_<part>.png` are merged into one label map. The
    merge happens the first time the split is listed and is cached (atomic writes) in
    `cache_dir`, else `$LGVQ_LABELMAP_CACHE`, else `<root>/.lgvq_cache/celebamask-labelmaps-v1/`
    (config: `datasets.<name>.cache_dir`; the variable serves `lgvq data check` on a read-only root).
    """

    name = "mmceleba"

    def __init__(self, root: str | Path, cache_dir: str | Path | None = None) -> None:
        super().__init__(root)
        self.image_dir = first_existing([self.root / "CelebA-HQ-img", self.root / "images",
                                          self.root / "CelebAMask-HQ" / "CelebA-HQ-img"], "CelebA-HQ image folder")
        self.caption_dir = self.root / "celeba-caption"
        if not self.caption_dir.is_dir():
            raise ArtifactError(f"caption folder not found: {self.caption_dir}")
        anno = [self.root / "CelebAMask-HQ-mask-anno", self.root / "CelebAMask-HQ" / "CelebAMask-HQ-mask-anno"]
        self.mask_dir = next((p for p in anno if p.is_dir()), None)
        env = os.environ.get(LABELMAP_CACHE_ENV)
        self.cache_dir = Path(cache_dir or env or self.root / ".lgvq_cache" / "celebamask-labelmaps-v1")

    def has_label_maps(self) -> bool:
        return self.mask_dir is not None

    def _names(self, key: str) -> list[str]:
        path = first_existing([self.root / key / "filenames.pickle", self.root / f"{key}.txt"], f"{key} filename list")
        return read_name_list(path)

    def _entries(self, key: str) -> Iterator[ImageEntry]:
        for name in self._names(key):
            stem = Path(name).stem  # lists hold "123"; tolerate "123.jpg"
            try:
                iid = int(stem)
            except ValueError as e:
                raise ArtifactError(f"{self.root / key}: name {name!r} is not a CelebA-HQ image number") from e
            cap = self.caption_dir / f"{stem}.txt"
            yield ImageEntry(iid, self.image_dir / f"{stem}.jpg", read_caption_lines(cap), cap)

    def _finish(self, scan: Scan, key: str) -> Scan:
        if self.mask_dir is None:
            return scan
        out = []
        for rec in scan.records:
            target = self.cache_dir / f"{rec.image_id}.png"
            if not target.is_file():
                problem = _merge_celebamask_parts(self.mask_dir / str(rec.image_id // 2000), rec.image_id, target)
                if problem is not None:
                    scan.problems.append(problem)
                    continue
            out.append(replace(rec, mask_path=target))
        scan.records = out
        return scan


def _merge_celebamask_parts(folder: Path, iid: int, target: Path) -> Problem | None:
    """Paint `<folder>/<iid:05d>_<part>.png` into one uint8 label map at `target` (atomic)."""
    from PIL import Image

    label: np.ndarray | None = None
    for idx, part in enumerate(CELEBAMASK_PARTS, 1):
        f = folder / f"{iid:05d}_{part}.png"
        if not f.is_file():
            continue  # a face has only some of the parts
        try:
            with Image.open(f) as im:
                on = np.asarray(im.convert("L")) > 0  # part files are 0/255, some saved as RGB
        except OSError as e:
            return Problem("unreadable", f, f"unreadable CelebAMask-HQ part of image {iid} ({e})")
        if label is None:
            label = np.zeros(on.shape, np.uint8)
        elif on.shape != label.shape:
            return Problem("unreadable", f, f"part size {on.shape} differs from the other parts' {label.shape}")
        label[on] = idx
    if label is None:
        return Problem("missing", folder / f"{iid:05d}_<part>.png", f"no CelebAMask-HQ part file for image {iid}")
    with atomic_path(target) as tmp:
        Image.fromarray(label, mode="L").save(tmp, format="PNG")
    return None
