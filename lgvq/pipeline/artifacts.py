"""What the stages share: the artifacts other jobs wrote, read back with clear errors, and the
images and FID scores every generating or reconstructing stage produces the same way.

- `text_cache`: the dataset's cached caption features, refused when the config's text encoder differs;
- `load_codes`, `CodeTable`: a tokenizer run's code files, checked, looked up by image id;
- `eval_images`, `reference_folder`, `write_pngs`, `png_folder`: the evaluation images, the real
  reference set, and folders of images written batch by batch that appear whole or not at all;
- `fid_extractor`, `score_fid`: the configured FID feature extractor and a labelled FID.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lgvq.arrays import RowArray
from lgvq.config import ConfigError
from lgvq.io import ArtifactError, atomic_path
from lgvq.metrics.image import to_uint8
from lgvq.pipeline import paths
from lgvq.pipeline.common import dataset_source
from lgvq.settings import dataset_settings, eval_settings, text_encoder_settings


def text_cache(cfg: dict[str, Any], dataset: str):
    from lgvq.text.cache import TextCache

    text = text_encoder_settings(cfg)
    cache = TextCache.load(paths.text_cache(cfg["results_dir"], dataset, text.name))
    # A cache built under another text-encoder setting (e.g. captions tokenised to 30 tokens while
    # text_encoder.max_length is now 16) would fail deep inside the LG module with a shape error,
    # or silently train on features the config does not describe: refuse it by name.
    if cache.max_length != text.max_length or cache.encoder_name != text.name:
        raise ConfigError(f"text_encoder.max_length/name: the text cache {cache.path} holds captions encoded by "
                          f"'{cache.encoder_name}' at up to {cache.max_length} tokens, but the config says "
                          f"'{text.name}' at max_length {text.max_length}; rebuild it with `lgvq text cache`")
    return cache


def frozen_text_encoder(cfg: dict[str, Any], device: str | torch.device):
    """The configured text encoder (`text_encoder.*`) on `device`: what builds the text cache and what
    re-encodes masked captions (leak-free Recall@1, `lg.mtp_input: leak_free`)."""
    from lgvq.text.registry import get_text_encoder

    text = text_encoder_settings(cfg)
    return get_text_encoder(text.name, path=text.path, max_length=text.max_length, device=str(device))


def eval_images(cfg: dict[str, Any], dataset: str, split: str = "test", limit: int | None = None):
    records = dataset_source(cfg, dataset).records(split)
    if limit is not None:
        records = records[:limit]
    return records_images(cfg, dataset, records), records


def records_images(cfg: dict[str, Any], dataset: str, records: list) -> Any:
    """`records`' images as the evaluations read them: the dataset's size and resize mode, no augmentation."""
    from lgvq.data.dataset import ImageTextDataset

    ds = dataset_settings(cfg, dataset)
    return ImageTextDataset(records, image_size=ds.image_size, train=False, resize_mode=ds.resize_mode, seed=0)


def write_pngs(images: np.ndarray, names: list[str], folder: Path) -> None:
    from PIL import Image

    for img, name in zip(images, names):
        with atomic_path(folder / f"{name}.png") as tmp:
            Image.fromarray(img).save(tmp, format="PNG")


@contextmanager
def png_folder(folder: Path) -> Iterator[Path]:
    """A temporary folder beside `folder` to write images into batch by batch; on success it
    replaces `folder` (no stale images of an earlier run stay behind), on failure it is removed
    and `folder` is left as it was."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))  # same filesystem: rename is atomic
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = folder.parent / f"{tmp.name}.old"
    if folder.exists():
        os.rename(folder, old)
    os.rename(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def reference_folder(cfg: dict[str, Any], dataset: str, batch: int = 64) -> Path:
    """The real test images (first `eval_images`) as PNGs, written once per dataset, `batch` at a time.

    Several evaluation jobs may ask at once: each writes into its own temporary folder and
    renames it into place; a job that loses the race uses the winner's (identical) folder.
    """
    n = dataset_settings(cfg, dataset).eval_images
    folder = paths.dataset_dir(cfg["results_dir"], dataset) / "eval" / f"reference_test_{n}"
    if (folder / "DONE").is_file():
        return folder
    data, records = eval_images(cfg, dataset, limit=n)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".ref-"))  # same filesystem: rename is atomic
    try:
        for i in range(0, len(data), batch):
            x = torch.stack([data[j]["image"] for j in range(i, min(i + batch, len(data)))])
            write_pngs(to_uint8(x), [f"{r.image_id:012d}" for r in records[i : i + batch]], tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # an unreadable image must not leave a half folder behind
        raise
    (tmp / "DONE").write_text(str(len(records)))
    try:
        os.rename(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / "DONE").is_file():
            raise ArtifactError(f"could not create the reference image folder {folder}")
    return folder


# Why an FID cell is empty when the config turns FID off (written into the metrics record).
FID_OFF_REASON = "FID not computed: eval.fid_extractor is none"


@dataclass
class FIDScore:
    """The FID part of a metrics record: metric and note under the extractor's label, or the
    reason it was not computed (`not_computed`); `description` goes into the manifest."""

    metrics: dict[str, float]
    notes: dict[str, str]
    not_computed: dict[str, str]
    description: str


def score_fid(images: Path, reference: Path | None, extractor, cache_dir: Path, *, tag: str | None = None,
              note_suffix: str = "") -> FIDScore:
    """FID of the images in `images` against `reference` with `extractor` (None: FID is off).
    `tag` names the generator inside the label, e.g. FID[shapes-cnn,AR-GPT]."""
    from lgvq.metrics.fid import compute_fid, fid_label

    if extractor is None:
        return FIDScore({}, {}, {"FID": FID_OFF_REASON}, FID_OFF_REASON)
    fid = compute_fid(images, reference, extractor=extractor, cache_dir=cache_dir)
    label = fid_label(extractor.name)
    label = f"{label[:-1]},{tag}]" if tag else label
    return FIDScore({label: fid.value}, {label: fid.description + note_suffix}, {}, fid.description)


def fid_extractor(cfg: dict[str, Any], dataset: str):
    """The configured FID feature extractor, or None when `eval.fid_extractor: none`."""
    from lgvq.metrics.extractors import InceptionExtractor, ShapesCNNExtractor

    ev = eval_settings(cfg)
    if ev.fid_extractor == "none":
        return None
    if ev.fid_extractor == "inception":
        return InceptionExtractor(ev.inception_weights)
    return ShapesCNNExtractor.load(paths.shapes_cnn_model(cfg["results_dir"], dataset))



def load_codes(path: Path) -> RowArray:
    """A code file written by `encode`, read by rows (never whole), with a clear error for a missing/corrupt one."""
    try:
        arr = RowArray.open_npy(path)
    except (OSError, ValueError, EOFError) as e:  # EOFError: an empty (0-byte) file
        raise ArtifactError(f"corrupt or missing code file {path}: {e}; re-run `lgvq tokenizer encode`") from e
    if arr.ndim != 3 or not np.issubdtype(arr.dtype, np.integer):
        raise ArtifactError(f"code file {path} has shape {arr.shape} / dtype {arr.dtype}; expected (N, h, w) integers")
    return arr


class CodeTable:
    """Codes looked up by image id, from the code files of the given splits (in order).

    Held: a sorted array of image ids and their rows (16 bytes an image); the code grids stay on disk
    and a batch reads its own rows (`lgvq.arrays.RowArray`).

    Test annotations may point at images of another image split: RefCOCOg's umd test
    expressions are on COCO train2014 images, which the coco source lists under "train". The
    tokenizer has seen those images either way (the paper uses the same MS-COCO codebook)."""

    def __init__(self, tokdir: Path, splits: tuple[str, ...]) -> None:
        self.parts: list[RowArray] = []
        ids_of = []
        for split in splits:
            codes = load_codes(tokdir / "codes" / f"{split}.npy")
            ids_path = tokdir / "codes" / f"{split}_image_ids.npy"
            try:
                ids = np.load(ids_path, allow_pickle=False)
            except (OSError, ValueError, EOFError) as e:
                raise ArtifactError(f"corrupt or missing {ids_path}: {e}; re-run `lgvq tokenizer encode`") from e
            if len(ids) != len(codes):
                raise ArtifactError(f"{ids_path} lists {len(ids)} images but its code file has {len(codes)}")
            if self.parts and codes.shape[1:] != self.parts[0].shape[1:]:
                raise ArtifactError(f"{tokdir / 'codes'}: {split} grids are {codes.shape[1:]}, "
                                    f"{splits[0]} grids {self.parts[0].shape[1:]}")
            self.parts.append(codes)
            ids_of.append(np.asarray(ids, dtype=np.int64))
        self.grid: tuple[int, ...] = tuple(self.parts[0].shape[1:])
        self.starts = np.cumsum([0, *(len(c) for c in self.parts)])  # the global row where each part begins
        ids = np.concatenate(ids_of)
        order = np.argsort(ids, kind="stable")  # an image in several splits (val and test may be the same
        first = np.r_[True, np.diff(ids[order]) != 0]  # images): its row in the first split listed
        self.ids, self.rows = ids[order][first], order[first]
        self.where = f"{tokdir / 'codes'} ({', '.join(splits)})"

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __call__(self, image_id: int) -> int:
        i = int(np.searchsorted(self.ids, image_id))
        if i == len(self.ids) or self.ids[i] != image_id:
            raise ArtifactError(f"image {image_id} has no codes in {self.where} (annotations and codes disagree)")
        return int(self.rows[i])

    def read(self, rows) -> np.ndarray:
        """(len(rows), h, w) code grids of the given global rows, read from their split's file."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        part = np.searchsorted(self.starts, rows, side="right") - 1
        out = np.empty((len(rows), *self.grid), dtype=self.parts[0].dtype)
        for k in np.unique(part):
            at = part == k
            out[at] = self.parts[k].take(rows[at] - self.starts[k])
        return out

    def batch(self, rows: list[int], device) -> torch.Tensor:
        return torch.as_tensor(self.read(rows), dtype=torch.long, device=device)
