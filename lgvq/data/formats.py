"""Readers and writers for the real datasets' on-disk formats.

The embedded dataset is written with these writers and read with these readers, and the same
readers serve real data: COCO captions / instances JSON, COCO-QA's four parallel text files,
RefCOCO(g) refs pickles (read with a restricted unpickler) and label-map PNGs.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from lgvq.data.base import RefRecord
from lgvq.data.packed import PackedRecords
from lgvq.io import ArtifactError, atomic_write_bytes, atomic_write_json, atomic_write_text, read_json

COCOQA_FILES = ("questions.txt", "answers.txt", "img_ids.txt", "types.txt")


# --- COCO captions / instances -----------------------------------------------------------------

def write_coco_captions(path: Path, images: list[dict], annotations: list[dict]) -> None:
    atomic_write_json(path, {"info": {"description": "lgvq"}, "licenses": [], "images": images,
                             "annotations": annotations})


def read_coco_captions(path: Path) -> tuple[dict[int, dict], dict[int, list[str]]]:
    """-> ({image_id: image entry}, {image_id: [captions]}) in file order."""
    data = read_json(path)
    for key in ("images", "annotations"):
        if key not in data:
            raise ArtifactError(f"{path}: not a COCO captions file (no '{key}' key)")
    images = {int(im["id"]): im for im in data["images"]}
    caps: dict[int, list[str]] = {i: [] for i in images}
    for ann in data["annotations"]:
        iid = int(ann["image_id"])
        if iid not in caps:
            raise ArtifactError(f"{path}: caption {ann.get('id')} refers to unknown image {iid}")
        caps[iid].append(str(ann["caption"]).strip())
    return images, caps


def write_coco_instances(path: Path, images: list[dict], annotations: list[dict], categories: list[dict]) -> None:
    atomic_write_json(path, {"info": {"description": "lgvq"}, "licenses": [], "images": images,
                             "annotations": annotations, "categories": categories})


def read_coco_instances(path: Path) -> dict[int, list[dict]]:
    data = read_json(path)
    out: dict[int, list[dict]] = {int(im["id"]): [] for im in data.get("images", [])}
    for ann in data.get("annotations", []):
        out.setdefault(int(ann["image_id"]), []).append(ann)
    return out


# --- COCO-QA ------------------------------------------------------------------------------------

def write_cocoqa(folder: Path, rows: list[tuple[str, str, int, int]]) -> None:
    """rows: (question, answer, image_id, type) -> the four parallel files, one line per question."""
    cols = list(zip(*rows)) if rows else [(), (), (), ()]
    for name, col in zip(COCOQA_FILES, cols):
        atomic_write_text(folder / name, "".join(f"{v}\n" for v in col))


def read_cocoqa(folder: Path) -> list[tuple[str, str, int, int]]:
    lines = {}
    for name in COCOQA_FILES:
        p = folder / name
        if not p.is_file():
            raise ArtifactError(f"COCO-QA file missing: {p}")
        lines[name] = p.read_text(encoding="utf-8").splitlines()
    counts = {n: len(v) for n, v in lines.items()}
    if len(set(counts.values())) != 1:
        raise ArtifactError(f"COCO-QA files in {folder} have different line counts: {counts}")
    out = []
    for k, (q, a, i, t) in enumerate(zip(*(lines[n] for n in COCOQA_FILES))):
        try:
            out.append((q.strip(), a.strip(), int(i), int(t)))
        except ValueError as e:
            raise ArtifactError(f"{folder}: line {k + 1} has a non-integer image id or type ({i!r}, {t!r})") from e
    return out


# --- RefCOCO(g) refs pickle ---------------------------------------------------------------------

class _RestrictedUnpickler(pickle.Unpickler):
    """Refs files are pickles; only plain containers and scalars may come out of them."""

    def find_class(self, module: str, name: str):  # noqa: D102
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: refs pickles may only hold plain data")


def write_refs(path: Path, refs: list[dict[str, Any]]) -> None:
    atomic_write_bytes(path, pickle.dumps(refs, protocol=2))


def read_refs(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise ArtifactError(f"refs file missing: {path}")
    try:
        refs = _RestrictedUnpickler(io.BytesIO(path.read_bytes())).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise ArtifactError(f"cannot load refs pickle {path}: {e}") from e
    if not isinstance(refs, list):
        raise ArtifactError(f"{path}: expected a list of refs, got {type(refs).__name__}")
    return refs


def read_ref_records(refs_path: Path, instances_path: Path) -> dict[str, PackedRecords[RefRecord]]:
    """Every split's referring expressions (one RefRecord per sentence, with its object's COCO box and the
    size of the image that box is in, both from instances.json) from
    the refer toolkit's pickle and instances.json, each parsed once per call. Only the records are kept,
    packed per split (lgvq.data.packed: ~160 bytes an expression, one buffer): the pickle's dicts (tokens,
    raw sentences, file names) and the annotations of objects no expression refers to are dropped."""
    try:
        refs = read_refs(refs_path)
    except UnicodeDecodeError as e:  # a Python 2 byte string that is not ASCII
        raise ArtifactError(f"cannot decode refs pickle {refs_path}: {e}") from e
    needed = {int(r["ann_id"]) for r in refs}
    instances = read_json(instances_path)
    boxes = {int(a["id"]): tuple(float(v) for v in a["bbox"])
             for a in instances.get("annotations", []) if int(a["id"]) in needed}
    pictured = {int(r["image_id"]) for r in refs}
    frames = {int(im["id"]): (int(im["width"]), int(im["height"])) for im in instances.get("images", [])
              if int(im["id"]) in pictured and "width" in im and "height" in im}
    del instances
    for ref in refs:
        if int(ref["ann_id"]) not in boxes:
            raise ArtifactError(f"ref {ref['ref_id']}: object {ref['ann_id']} is not in {instances_path}")

    def split_records(split: str) -> Iterator[RefRecord]:  # one pass per split: no list of records is built
        for ref in refs:
            if str(ref.get("split")) == split:
                box, iid = boxes[int(ref["ann_id"])], int(ref["image_id"])
                for s in ref["sentences"]:
                    yield RefRecord(int(ref["ref_id"]), iid, str(s["sent"]), box, frames.get(iid))

    return {split: PackedRecords(split_records(split)) for split in dict.fromkeys(str(r.get("split")) for r in refs)}


# --- label maps ---------------------------------------------------------------------------------

def read_label_map(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P"):
                raise ArtifactError(f"label map {path} has mode {im.mode}; expected a single-channel PNG")
            return np.asarray(im, dtype=np.uint8).copy()
    except OSError as e:
        raise ArtifactError(f"unreadable label map {path}: {e}") from e
