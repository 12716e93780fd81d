"""Frozen text features, computed once per dataset x text encoder and cached in one .npz.

Holds, for every caption (row): token ids, per-token features (float16), padding and special
masks, the global feature, and which image/caption it belongs to; plus the encoder's token
embedding matrix (L_mtp predicts words through it), so training never loads the text model.

The .npz is uncompressed (what `np.savez` writes, and what `np.load` still reads), so its
members are read where they lie in the file, by rows (`lgvq.arrays.RowArray`: positional reads, no
memory map): a training rank or an evaluation holds only the rows of its batches, never the whole
cache (CLIP width x 30 tokens is ~19 GB for COCO), and no page of it stays in the job's RSS.
Building writes each batch's features straight into on-disk arrays and zips them at the end, so
the encoder's output for the whole dataset is never held either.
"""

from __future__ import annotations

import shutil
import struct
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from lgvq.arrays import NpyRowWriter, RowArray, npy_header
from lgvq.io import ArtifactError, atomic_path
from lgvq.text.base import TextEncoder, TextFeatures

REQUIRED = ("token_ids", "tokens", "valid", "special", "global_", "image_ids", "caption_index", "captions",
            "token_embeddings", "meta")
# The per-caption arrays, filled batch by batch while encoding, with the dtype each is stored in.
_PER_ROW = {"token_ids": np.int32, "tokens": np.float16, "valid": np.bool_, "special": np.bool_,
            "global_": np.float32}
# Small arrays read into memory on load; every other member is read a batch of rows at a time.
_IN_MEMORY = ("image_ids", "caption_index", "meta")
_LOCAL_HEADER = 30  # bytes of a zip local file header before its name and extra field


@torch.no_grad()
def build_text_cache(captions_by_image: dict[int, list[str]], encoder: TextEncoder, out_path: str | Path,
                     batch_size: int = 256) -> Path:
    image_ids, cap_idx, captions = [], [], []
    for iid in sorted(captions_by_image):
        for k, c in enumerate(captions_by_image[iid]):
            image_ids.append(iid)
            cap_idx.append(k)
            captions.append(c)
    if not captions:
        raise ArtifactError(f"no captions to encode for {out_path}")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Same filesystem as the cache: the members are built there, then zipped into the atomic temporary.
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.stem}.build-"))
    arrays: dict[str, NpyRowWriter] = {}
    try:
        for i in tqdm(range(0, len(captions), batch_size), desc=f"text[{encoder.name}]", mininterval=1.0):
            part = encoder.encode(captions[i : i + batch_size])
            for name, dtype in _PER_ROW.items():
                value = getattr(part, name).cpu().numpy()
                if name not in arrays:  # shapes are known once the first batch is encoded
                    arrays[name] = NpyRowWriter(work / f"{name}.npy", dtype, (len(captions), *value.shape[1:]))
                arrays[name].append(value)
        # Fixed-width unicode (4 bytes a character of the longest caption): written in chunks too.
        arrays["captions"] = NpyRowWriter(work / "captions.npy", f"<U{max(1, max(map(len, captions)))}",
                                        (len(captions),))
        for i in range(0, len(captions), batch_size):
            arrays["captions"].append(np.asarray(captions[i : i + batch_size]))
        for w in arrays.values():
            w.close()
        small = {"image_ids": np.asarray(image_ids, dtype=np.int64),
                 "caption_index": np.asarray(cap_idx, dtype=np.int32),
                 "token_embeddings": encoder.token_embedding_matrix().float().numpy().astype(np.float16),
                 "meta": np.asarray([encoder.name, str(encoder.model_id), str(encoder.max_length)], dtype=np.str_)}
        for name, value in small.items():
            np.save(work / f"{name}.npy", value, allow_pickle=False)
        with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name in REQUIRED:  # copied in chunks: stored, so each member stays mappable in place
                zf.write(work / f"{name}.npy", arcname=f"{name}.npy")
    finally:
        for w in arrays.values():
            w.fh.close()
        shutil.rmtree(work, ignore_errors=True)
    return out


def _member_rows(f, path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, size: int) -> np.ndarray | RowArray:
    """The .npy member `info` as rows read from `path` where it lies (a compressed member is read instead)."""
    if info.compress_type != zipfile.ZIP_STORED:
        with zf.open(info) as m:
            return np.lib.format.read_array(m, allow_pickle=False)
    f.seek(info.header_offset)
    head = f.read(_LOCAL_HEADER)
    if len(head) < _LOCAL_HEADER or head[:4] != b"PK\x03\x04":
        raise ValueError(f"bad local header of member {info.filename}")
    name_len, extra_len = struct.unpack("<HH", head[26:30])
    f.seek(info.header_offset + _LOCAL_HEADER + name_len + extra_len)
    shape, fortran, dtype = npy_header(f, f"member {info.filename}")
    if not shape or int(np.prod(shape, dtype=np.int64)) == 0:  # nothing to read by rows
        with zf.open(info) as m:
            return np.lib.format.read_array(m, allow_pickle=False)
    return RowArray.checked(path, f.tell(), shape, fortran, dtype, size, f"member {info.filename}")


class TextCache:
    def __init__(self, path: Path, arrays: dict[str, np.ndarray]) -> None:
        self.path = path
        self.token_ids = arrays["token_ids"]
        self.tokens = arrays["tokens"]
        self.valid = arrays["valid"]
        self.special = arrays["special"]
        self.global_ = arrays["global_"]
        self.image_ids = np.asarray(arrays["image_ids"])
        self.caption_index = arrays["caption_index"]
        self.captions = arrays["captions"]
        self.token_embeddings = arrays["token_embeddings"]
        self.encoder_name, self.model_id, max_len = (str(v) for v in arrays["meta"])
        self.max_length = int(max_len)
        self.width = int(self.tokens.shape[-1])
        # Rows of an image: a range of the rows sorted (stably) by image id, found by bisection.
        # No per-caption Python index: the captions stay on disk and are compared row by row.
        self._order = np.argsort(self.image_ids, kind="stable")
        self._sorted_ids = self.image_ids[self._order]

    @classmethod
    def load(cls, path: str | Path) -> "TextCache":
        p = Path(path)
        if not p.is_file():
            raise ArtifactError(f"text cache missing: {p}; build it with `lgvq text cache`")
        try:
            size = p.stat().st_size
            with zipfile.ZipFile(p) as zf, open(p, "rb") as f:
                infos = {i.filename[: -len(".npy")]: i for i in zf.infolist() if i.filename.endswith(".npy")}
                missing = [k for k in REQUIRED if k not in infos]
                if missing:
                    raise ArtifactError(f"text cache {p} lacks {missing}; delete it and rebuild with `lgvq text cache`")
                arrays = {k: _member_rows(f, p, zf, infos[k], size) for k in REQUIRED}
            arrays.update({k: np.array(arrays[k]) for k in _IN_MEMORY})
            rows = len(arrays["image_ids"])
            short = [k for k in (*_PER_ROW, "caption_index", "captions") if len(arrays[k]) != rows]
            if short:
                raise ValueError(f"{short} do not have one row per caption ({rows})")
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise ArtifactError(f"corrupt or truncated text cache {p} ({e}); delete it and rebuild with `lgvq text cache`") from e
        return cls(p, arrays)

    def __len__(self) -> int:
        return len(self.image_ids)

    def rows_for_image(self, image_id: int) -> list[int]:
        lo = np.searchsorted(self._sorted_ids, image_id, side="left")
        hi = np.searchsorted(self._sorted_ids, image_id, side="right")
        if lo == hi:
            raise ArtifactError(f"image {image_id} has no captions in text cache {self.path}; rebuild it")
        return self._order[lo:hi].tolist()

    def row(self, image_id: int, caption: str) -> int:
        lo = np.searchsorted(self._sorted_ids, image_id, side="left")
        hi = np.searchsorted(self._sorted_ids, image_id, side="right")
        rows = self._order[lo:hi]  # an image's rows, read in one go (consecutive in a cache this module built)
        for r, text in zip(rows.tolist(), self.captions[rows]):  # the first row holding it, as duplicates are allowed
            if str(text) == caption:
                return r
        raise ArtifactError(f"caption {caption!r} of image {image_id} is not in text cache {self.path}; "
                            "the dataset changed since the cache was built: rebuild it")

    def features(self, rows) -> TextFeatures:
        idx = np.asarray(rows, dtype=np.int64)
        return TextFeatures(
            torch.from_numpy(self.token_ids[idx].astype(np.int64)), torch.from_numpy(self.tokens[idx].astype(np.float32)),
            torch.from_numpy(np.asarray(self.valid[idx])), torch.from_numpy(np.asarray(self.special[idx])),
            torch.from_numpy(np.array(self.global_[idx], dtype=np.float32)),
        )

    def describe(self) -> dict[str, object]:
        return {"name": self.encoder_name, "model": self.model_id, "max_length": self.max_length, "width": self.width}
