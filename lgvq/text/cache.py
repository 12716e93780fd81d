"""Frozen text features, computed once per dataset x text encoder and cached in one .npz.

Holds, for every caption (row): token ids, per-token features (float16), padding and special
masks, the global feature, and which image/caption it belongs to; plus the encoder's token
embedding matrix (L_mtp predicts words through it), so training never loads the text model.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from lgvq.io import ArtifactError, atomic_path
from lgvq.text.base import TextEncoder, TextFeatures

REQUIRED = ("token_ids", "tokens", "valid", "special", "global_", "image_ids", "caption_index", "captions",
            "token_embeddings", "meta")


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
    parts: list[TextFeatures] = []
    for i in tqdm(range(0, len(captions), batch_size), desc=f"text[{encoder.name}]", mininterval=1.0):
        parts.append(encoder.encode(captions[i : i + batch_size]))
    cat = lambda name: torch.cat([getattr(p, name) for p in parts]).numpy()  # noqa: E731
    out = Path(out_path)
    with atomic_path(out) as tmp:
        np.savez(
            tmp,
            token_ids=cat("token_ids").astype(np.int32), tokens=cat("tokens").astype(np.float16),
            valid=cat("valid"), special=cat("special"), global_=cat("global_").astype(np.float32),
            image_ids=np.asarray(image_ids, dtype=np.int64), caption_index=np.asarray(cap_idx, dtype=np.int32),
            captions=np.asarray(captions, dtype=np.str_),
            token_embeddings=encoder.token_embedding_matrix().numpy().astype(np.float16),
            meta=np.asarray([encoder.name, str(encoder.model_id), str(encoder.max_length)], dtype=np.str_),
        )
    return out


class TextCache:
    def __init__(self, path: Path, arrays: dict[str, np.ndarray]) -> None:
        self.path = path
        self.token_ids = arrays["token_ids"]
        self.tokens = arrays["tokens"]
        self.valid = arrays["valid"]
        self.special = arrays["special"]
        self.global_ = arrays["global_"]
        self.image_ids = arrays["image_ids"]
        self.caption_index = arrays["caption_index"]
        self.captions = arrays["captions"]
        self.token_embeddings = arrays["token_embeddings"]
        self.encoder_name, self.model_id, max_len = (str(v) for v in arrays["meta"])
        self.max_length = int(max_len)
        self.width = int(self.tokens.shape[-1])
        self._rows: dict[tuple[int, str], int] = {}
        self._by_image: dict[int, list[int]] = {}
        for r, (iid, cap) in enumerate(zip(self.image_ids.tolist(), self.captions.tolist())):
            self._rows.setdefault((iid, cap), r)
            self._by_image.setdefault(iid, []).append(r)

    @classmethod
    def load(cls, path: str | Path) -> "TextCache":
        p = Path(path)
        if not p.is_file():
            raise ArtifactError(f"text cache missing: {p}; build it with `lgvq text cache`")
        try:
            with np.load(p, allow_pickle=False) as z:
                missing = [k for k in REQUIRED if k not in z.files]
                if missing:
                    raise ArtifactError(f"text cache {p} lacks {missing}; delete it and rebuild with `lgvq text cache`")
                arrays = {k: z[k] for k in REQUIRED}
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise ArtifactError(f"corrupt or truncated text cache {p} ({e}); delete it and rebuild with `lgvq text cache`") from e
        return cls(p, arrays)

    def __len__(self) -> int:
        return len(self.image_ids)

    def rows_for_image(self, image_id: int) -> list[int]:
        if image_id not in self._by_image:
            raise ArtifactError(f"image {image_id} has no captions in text cache {self.path}; rebuild it")
        return self._by_image[image_id]

    def row(self, image_id: int, caption: str) -> int:
        try:
            return self._rows[(image_id, caption)]
        except KeyError:
            raise ArtifactError(f"caption {caption!r} of image {image_id} is not in text cache {self.path}; "
                                "the dataset changed since the cache was built: rebuild it") from None

    def features(self, rows) -> TextFeatures:
        idx = np.asarray(rows, dtype=np.int64)
        return TextFeatures(
            torch.from_numpy(self.token_ids[idx].astype(np.int64)), torch.from_numpy(self.tokens[idx].astype(np.float32)),
            torch.from_numpy(self.valid[idx]), torch.from_numpy(self.special[idx]), torch.from_numpy(self.global_[idx]),
        )

    def describe(self) -> dict[str, object]:
        return {"name": self.encoder_name, "model": self.model_id, "max_length": self.max_length, "width": self.width}
