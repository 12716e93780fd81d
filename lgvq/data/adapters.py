"""Real-dataset sources: the six datasets of the paper, each read from its official on-disk layout.

Every source here exposes the three splits the pipeline asks for (train / val / test). Where a
dataset ships only two, the held-out one serves as both val and test (said per class below).
Layouts, and where each root must point, are documented in docs/real_datasets.md.

Two rules hold for all of them:
- Nothing is skipped silently. A missing image or caption file, or an image without captions,
  is a `Problem` (kind + path); `records()` raises an ArtifactError naming the first one, and
  `lgvq data check` (lgvq/data/check.py) lists them all from `scan()`.
- Captions are filtered as the authors' loaders do (PAPER.md): a caption is kept only when
  (words + 2) < 30, i.e. at most 27 whitespace-separated words. The filter is counted per split
  (`Scan.caption_filter`); an image left with no caption is dropped from `records()` and counted
  there too (that is a property of the data, not a broken file, so it is not an error).
"""

from __future__ import annotations

import io
import os
import pickle
from abc import abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import numpy as np

from lgvq.data.formats import read_coco_captions, read_cocoqa, read_refs
from lgvq.data.registry import (
    DatasetSource,
    ImageRecord,
    QARecord,
    RefRecord,
    register_dataset,
)
from lgvq.io import ArtifactError, atomic_path, read_json

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
class _Entry:
    image_id: int
    image: Path
    captions: list[str] | None  # None: the caption file is missing
    caption_src: Path  # the file the captions come from, named in errors


# --- small readers --------------------------------------------------------------------------------

def _first_existing(candidates: Iterable[Path], what: str) -> Path:
    cands = list(dict.fromkeys(candidates))
    for c in cands:
        if c.exists():
            return c
    raise ArtifactError(f"{what} not found; looked for: {', '.join(str(c) for c in cands)}")


def _read_caption_lines(path: Path) -> list[str] | None:
    """One caption per line (CUB text_c10, celeba-caption); blank lines are not captions."""
    if not path.is_file():
        return None
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ArtifactError(f"caption file is not UTF-8: {path}: {e}") from e
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def _read_id_table(path: Path) -> dict[int, str]:
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


def _read_name_list(path: Path) -> list[str]:
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


def _coco_image_captions(root: Path, year_split: str) -> dict[int, _Entry]:
    """COCO 2014 `annotations/captions_<split>2014.json` -> entries for `<split>2014/<file_name>`."""
    cap_file = root / "annotations" / f"captions_{year_split}.json"
    images, caps = read_coco_captions(cap_file)
    return {iid: _Entry(iid, root / year_split / im["file_name"], caps[iid], cap_file) for iid, im in images.items()}


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

    def _key(self, split: str) -> str:
        if split not in self.split_files:
            raise ArtifactError(f"unknown split '{split}' for {self.name} at {self.root} "
                                f"(splits: {', '.join(self.split_files)})")
        return self.split_files[split]

    @abstractmethod
    def _entries(self, key: str) -> Iterator[_Entry]:
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
    def _build(entries: Iterable[_Entry]) -> Scan:
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


# --- CUB-200-2011 + Reed et al. captions --------------------------------------------------------

@register_dataset("cub")
class CUBSource(RealSource):
    """CUB-200-2011 with Reed et al.'s 10 captions per image.

    root = the extracted `CUB_200_2011/` folder, or a folder containing it. The captions folder
    (`text_c10/`, or `text/` as AttnGAN's birds.zip names it) is looked up in root, then in
    `CUB_200_2011/`: so either root holds both folders side by side, or root is
    `CUB_200_2011/` with the captions moved inside it. Nothing outside root is read. Splits: the official
    train_test_split.txt (1 = train); its test half is both val and test, as in the authors' code.
    Image ids are CUB's 1-based ids from images.txt.
    """

    name = "cub"

    def __init__(self, root: str | Path) -> None:
        super().__init__(root)
        self.cub_dir = _first_existing([self.root / "images.txt", self.root / "CUB_200_2011" / "images.txt"],
                                       "CUB-200-2011 images.txt").parent
        self.text_dir = _first_existing(
            [d / n for d in (self.root, self.cub_dir) for n in ("text_c10", "text")],
            "Reed et al. captions folder (text_c10/ or text/)")

    def _entries(self, key: str) -> Iterator[_Entry]:
        split_file = self.cub_dir / "train_test_split.txt"
        flags = _read_id_table(split_file)
        want = "1" if key == "train" else "0"
        for iid, rel in _read_id_table(self.cub_dir / "images.txt").items():
            if iid not in flags:
                raise ArtifactError(f"{split_file}: no train/test flag for image {iid} ({rel})")
            if flags[iid] != want:
                continue
            cap = self.text_dir / Path(rel).with_suffix(".txt")
            yield _Entry(iid, self.cub_dir / "images" / rel, _read_caption_lines(cap), cap)

    def bounding_boxes(self) -> dict[int, tuple[float, float, float, float]]:
        """{image id: (x, y, width, height)} in pixels, from the optional bounding_boxes.txt."""
        path = self.cub_dir / "bounding_boxes.txt"
        out = {}
        for iid, value in _read_id_table(path).items():
            try:
                x, y, w, h = (float(v) for v in value.split())
            except ValueError as e:
                raise ArtifactError(f"{path}: image {iid} has no 'x y width height' box: {value!r}") from e
            out[iid] = (x, y, w, h)
        return out


# --- MM-CelebA-HQ + CelebAMask-HQ ---------------------------------------------------------------

# CelebAMask-HQ's part order; label = index + 1 (0 = background), later parts paint over earlier
# ones, as in the dataset's own merging script.
CELEBAMASK_PARTS = ("skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear", "mouth",
                    "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth")
LABELMAP_CACHE_ENV = "LGVQ_LABELMAP_CACHE"


@register_dataset("mmceleba")
class MMCelebASource(RealSource):
    """MM-CelebA-HQ: `CelebA-HQ-img/<id>.jpg` (or the authors' `images/`), `celeba-caption/<id>.txt`,
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
        self.image_dir = _first_existing([self.root / "CelebA-HQ-img", self.root / "images"], "CelebA-HQ image folder")
        self.caption_dir = self.root / "celeba-caption"
        if not self.caption_dir.is_dir():
            raise ArtifactError(f"caption folder not found: {self.caption_dir}")
        anno = [self.root / "CelebAMask-HQ-mask-anno", self.root / "CelebAMask-HQ" / "CelebAMask-HQ-mask-anno"]
        self.mask_dir = next((p for p in anno if p.is_dir()), None)
        env = os.environ.get(LABELMAP_CACHE_ENV)
        self.cache_dir = Path(cache_dir or env or self.root / ".lgvq_cache" / "celebamask-labelmaps-v1")

    def _names(self, key: str) -> list[str]:
        path = _first_existing([self.root / key / "filenames.pickle", self.root / f"{key}.txt"], f"{key} filename list")
        return _read_name_list(path)

    def _entries(self, key: str) -> Iterator[_Entry]:
        for name in self._names(key):
            stem = Path(name).stem  # lists hold "123"; tolerate "123.jpg"
            try:
                iid = int(stem)
            except ValueError as e:
                raise ArtifactError(f"{self.root / key}: name {name!r} is not a CelebA-HQ image number") from e
            cap = self.caption_dir / f"{stem}.txt"
            yield _Entry(iid, self.image_dir / f"{stem}.jpg", _read_caption_lines(cap), cap)

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


# --- TextCaps -------------------------------------------------------------------------------------

def textcaps_int_id(image_id: str) -> int:
    """TextCaps ids are 16 hex digits (Open Images ids); keep the low 63 bits so they fit int64
    code files. Two ids colliding needs equal low 63 bits: checked per split, never seen."""
    try:
        return int(image_id, 16) & ((1 << 63) - 1)
    except ValueError as e:
        raise ArtifactError(f"TextCaps image id {image_id!r} is not hexadecimal") from e


@register_dataset("textcaps")
class TextCapsSource(RealSource):
    """TextCaps 0.1: `TextCaps_0.1_{train,val}.json` (in root or root/annotations/), images in
    `train_images/` (the val images are there too). The official test JSON has no captions, so
    val is both val and test. One JSON entry per caption; entries are grouped per image."""

    name = "textcaps"
    split_files: ClassVar[dict[str, str]] = {"train": "train", "val": "val", "test": "val"}

    def _entries(self, key: str) -> Iterator[_Entry]:
        name = f"TextCaps_0.1_{key}.json"
        path = _first_existing([self.root / name, self.root / "annotations" / name], f"TextCaps {key} annotations")
        data = read_json(path)
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise ArtifactError(f"{path}: not a TextCaps file (no 'data' list)")
        grouped: dict[int, _Entry] = {}
        hex_of: dict[int, str] = {}
        for k, item in enumerate(data["data"]):
            if "image_id" not in item:
                raise ArtifactError(f"{path}: entry {k} has no image_id")
            hid = str(item["image_id"])
            iid = textcaps_int_id(hid)
            if hex_of.setdefault(iid, hid) != hid:
                raise ArtifactError(f"{path}: image ids {hex_of[iid]} and {hid} collide in 63 bits")
            if iid not in grouped:
                # "image_path" is "train/<id>.jpg" (Open Images' folder); the files live in train_images/
                fname = (Path(item["image_path"]).name if item.get("image_path")
                         else f"{item.get('image_name', hid)}.jpg")
                grouped[iid] = _Entry(iid, self.root / "train_images" / fname, [], path)
            if item.get("caption_str"):
                grouped[iid].captions.append(str(item["caption_str"]).strip())  # type: ignore[union-attr]
        yield from grouped.values()


# --- MS-COCO 2014 ---------------------------------------------------------------------------------

@register_dataset("coco")
class COCOSource(RealSource):
    """MS-COCO 2014 captions: `train2014/`, `val2014/`, `annotations/captions_{train,val}2014.json`.
    train = train2014; val2014 is both val and test (the paper names no test split). One record per
    image with all its captions (the authors iterate per caption; we draw one per access)."""

    name = "coco"
    split_files: ClassVar[dict[str, str]] = {"train": "train2014", "val": "val2014", "test": "val2014"}

    def _entries(self, key: str) -> Iterator[_Entry]:
        yield from _coco_image_captions(self.root, key).values()

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

    def refs(self, split: str) -> list[RefRecord]:
        if not (self.root / "refcocog").is_dir():
            return super().refs(split)
        return RefCOCOgSource(self.root).refs(split)


# --- COCO-QA ------------------------------------------------------------------------------------

@register_dataset("cocoqa")
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
        self._coco: dict[int, _Entry] | None = None

    def qa(self, split: str) -> list[QARecord]:
        return [QARecord(i, q, a, t) for q, a, i, t in read_cocoqa(self.qa_dir / self._key(split))]

    def _entries(self, key: str) -> Iterator[_Entry]:
        if self._coco is None:  # COCO-QA draws from both halves of COCO 2014
            self._coco = {**_coco_image_captions(self.root, "train2014"), **_coco_image_captions(self.root, "val2014")}
        ids_file = self.qa_dir / key / "img_ids.txt"
        for iid in dict.fromkeys(row[2] for row in read_cocoqa(self.qa_dir / key)):
            if iid not in self._coco:
                raise ArtifactError(f"image {iid} of {ids_file} is in neither {self.root / 'annotations'}"
                                    "/captions_train2014.json nor captions_val2014.json")
            yield self._coco[iid]


# --- RefCOCOg (umd) ---------------------------------------------------------------------------------

@register_dataset("refcocog")
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
        self._refs: list[dict] | None = None
        self._boxes: dict[int, tuple[float, float, float, float]] | None = None
        self._coco: dict[int, _Entry] | None = None

    def _load(self) -> tuple[list[dict], dict[int, tuple[float, float, float, float]]]:
        if self._refs is None or self._boxes is None:
            path = self.ref_dir / "refs(umd).p"
            try:
                self._refs = read_refs(path)
            except UnicodeDecodeError as e:  # a Python 2 byte string that is not ASCII
                raise ArtifactError(f"cannot decode refs pickle {path}: {e}") from e
            inst = read_json(self.ref_dir / "instances.json")
            self._boxes = {int(a["id"]): tuple(float(v) for v in a["bbox"])  # type: ignore[misc]
                           for a in inst.get("annotations", [])}
        return self._refs, self._boxes

    def refs(self, split: str) -> list[RefRecord]:
        key = self._key(split)
        refs, boxes = self._load()
        out = []
        for ref in refs:
            if ref.get("split") != key:
                continue
            if int(ref["ann_id"]) not in boxes:
                raise ArtifactError(f"ref {ref['ref_id']}: object {ref['ann_id']} is not in "
                                    f"{self.ref_dir / 'instances.json'}")
            box = boxes[int(ref["ann_id"])]
            out += [RefRecord(int(ref["ref_id"]), int(ref["image_id"]), str(s["sent"]), box) for s in ref["sentences"]]
        return out

    def _entries(self, key: str) -> Iterator[_Entry]:
        if self._coco is None:  # RefCOCOg images are all COCO train2014 images
            self._coco = _coco_image_captions(self.root, "train2014")
        coco = self._coco
        refs, _ = self._load()
        for iid in dict.fromkeys(int(r["image_id"]) for r in refs if r.get("split") == key):
            if iid not in coco:
                raise ArtifactError(f"image {iid} of {self.ref_dir / 'refs(umd).p'} is not in "
                                    f"{self.root / 'annotations' / 'captions_train2014.json'}")
            yield coco[iid]
