"""The part every real-dataset source shares: records built from a scan of one split.

Every source exposes the three splits the pipeline asks for (train / val / test). Where a
dataset ships only two, the held-out one serves as both val and test (said per class, in each
source's module).

Two rules hold for all of them:
- Nothing is skipped silently. A missing image or caption file, or an image without captions,
  is a `Problem` (kind + path); `records()` raises an ArtifactError naming the first one, and
  `lgvq data check` (lgvq/data/check.py) lists them all from `scan()`.
- Captions are filtered as the authors' loaders do (PAPER.md): a caption is kept only when
  (words + 2) < 30, i.e. at most 27 whitespace-separated words. The filter is counted per split
  (`Scan.caption_filter`); an image left with no caption is dropped from `records()` and counted
  there too (that is a property of the data, not a broken file, so it is not an error).

A subclass only lists its layout's images with their captions (`_entries`); the small readers
below are shared by several layouts.
"""

from __future__ import annotations

import io
import pickle
from abc import abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from lgvq.data.base import DatasetSource, ImageRecord
from lgvq.data.formats import read_coco_captions
from lgvq.io import ArtifactError

# The authors keep a caption when len(caption.split()) + 2 < 30 (start/end tokens count).
MAX_CAPTION_TOKENS = 30


def keep_caption(caption: str, max_tokens: int = MAX_CAPTION_TOKENS) -> bool:
    return len(caption.split()) + 2 < max_tokens


@dataclass(frozen=True)
class Problem:
    kind: str  # "missing" (file absent) | "no_captions" | "unreadable"
    path: Path
    detail: str

    def message(self) -> str:
        return f"{self.detail}: {self.path}"


@dataclass
class CaptionFilter:
    """What the 30-token filter removed from one split."""

    captions_kept: int = 0
    captions_dropped: int = 0
    images_dropped: int = 0  # every caption of the image was over the limit


@dataclass
class Scan:
    """One split, listed without stopping at the first problem (for `lgvq data check`)."""

    records: list[ImageRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    caption_filter: CaptionFilter = field(default_factory=CaptionFilter)


@dataclass
class ImageEntry:
    """One image of a real layout with its captions, before it becomes an ImageRecord."""

    image_id: int
    image: Path
    captions: list[str] | None  # None: the caption file is missing
    caption_src: Path  # the file the captions come from, named in errors


# --- small readers --------------------------------------------------------------------------------

def first_existing(candidates: Iterable[Path], what: str) -> Path:
    cands = list(dict.fromkeys(candidates))
    for c in cands:
        if c.exists():
            return c
    raise ArtifactError(f"{what} not found; looked for: {', '.join(str(c) for c in cands)}")


def read_caption_lines(path: Path) -> list[str] | None:
    """One caption per line (CUB text_c10, celeba-caption); blank lines are not captions."""
    if not path.is_file():
        return None
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ArtifactError(f"caption file is not UTF-8: {path}: {e}") from e
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def read_id_table(path: Path) -> dict[int, str]:
    """CUB's `<1-based id> <value>` text tables (images.txt, train_test_split.txt, ...)."""
    if not path.is_file():
        raise ArtifactError(f"missing file: {path}")
    out: dict[int, str] = {}
    for k, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        try:
            out[int(parts[0])] = parts[1].strip()
        except (ValueError, IndexError) as e:
            raise ArtifactError(f"{path}: line {k} is not '<id> <value>': {line!r}") from e
    return out


class _PlainUnpickler(pickle.Unpickler):
    """Filename lists are pickles; only built-in containers and strings may come out of them."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a filename list holds only strings")


def read_name_list(path: Path) -> list[str]:
    """A list of names: AttnGAN-style `filenames.pickle` or a plain text file (one per line)."""
    if path.suffix == ".txt":
        return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    try:
        # latin1: the lists were written by Python 2, whose str is bytes.
        names = _PlainUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise ArtifactError(f"cannot load filename list {path}: {e}") from e
    if not isinstance(names, list) or not all(isinstance(n, (str, bytes, int)) for n in names):
        raise ArtifactError(f"{path}: expected a list of file names")
    return [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]


def coco_image_captions(root: Path, year_split: str) -> dict[int, ImageEntry]:
    """COCO 2014 `annotations/captions_<split>2014.json` -> entries for `<split>2014/<file_name>`."""
    cap_file = root / "annotations" / f"captions_{year_split}.json"
    images, caps = read_coco_captions(cap_file)
    return {iid: ImageEntry(iid, root / year_split / im["file_name"], caps[iid], cap_file) for iid, im in images.items()}


# --- the common part --------------------------------------------------------------------------------

class RealSource(DatasetSource):
    """Builds records from `_entries(split)`; subclasses only read their layout."""

    name = "real"
    # split the pipeline asks for -> split of the dataset's own files (aliases share one scan)
    split_files: ClassVar[dict[str, str]] = {"train": "train", "val": "test", "test": "test"}

    def __init__(self, root: str | Path) -> None:
        super().__init__(root)
        self._scans: dict[str, Scan] = {}

    def splits(self) -> list[str]:
        return list(self.split_files)

    def has_label_maps(self) -> bool:
        return False  # only MM-CelebA-HQ's CelebAMask-HQ parts give label maps (it overrides this)

    def _key(self, split: str) -> str:
        if split not in self.split_files:
            raise ArtifactError(f"unknown split '{split}' for {self.name} at {self.root} "
                                f"(splits: {', '.join(self.split_files)})")
        return self.split_files[split]

    @abstractmethod
    def _entries(self, key: str) -> Iterator[ImageEntry]:
        """The images of one on-disk split, each with its captions (every adapter reads its layout)."""

    def scan(self, split: str) -> Scan:
        key = self._key(split)
        if key not in self._scans:
            self._scans[key] = self._finish(self._build(self._entries(key)), key)
        return self._scans[key]

    def _finish(self, scan: Scan, key: str) -> Scan:
        """Hook for per-record extras (MM-CelebA-HQ label maps)."""
        return scan

    @staticmethod
    def _build(entries: Iterable[ImageEntry]) -> Scan:
        scan = Scan()
        f = scan.caption_filter
        for e in entries:
            if not e.image.is_file():
                scan.problems.append(Problem("missing", e.image, f"image {e.image_id} is missing"))
            if e.captions is None:
                scan.problems.append(Problem("missing", e.caption_src, f"caption file of image {e.image} is missing"))
                continue
            if not e.captions:
                scan.problems.append(Problem("no_captions", e.image, f"no captions in {e.caption_src} for image"))
                continue
            kept = [c for c in e.captions if keep_caption(c)]
            f.captions_kept += len(kept)
            f.captions_dropped += len(e.captions) - len(kept)
            if not kept:
                f.images_dropped += 1
                continue
            scan.records.append(ImageRecord(e.image_id, e.image, tuple(kept)))
        return scan

    def records(self, split: str) -> list[ImageRecord]:
        scan = self.scan(split)
        if scan.problems:
            more = len(scan.problems) - 1
            hint = f" (and {more} more problem(s); `lgvq data check {self.name} --root {self.root}` lists them)"
            raise ArtifactError(scan.problems[0].message() + (hint if more else ""))
        if not scan.records:
            raise ArtifactError(f"split '{split}' of {self.name} at {self.root} has no images")
        return scan.records
