"""The torch Dataset every stage reads images through.

Preprocessing follows the authors' loaders (PAPER.md): "resize" (CelebA-HQ, TextCaps) resizes
to a square; "resize_crop" (CUB) resizes the short side then crops (random crop + horizontal
flip for training, centre crop for evaluation). Images come out as float (3, S, S) in [-1, 1].
One caption per access for training, drawn at random as the authors do, but from
(seed, epoch, index) so a resumed run sees the same captions as an uninterrupted one.
The dataset holds records only, packed in one buffer (lgvq.data.packed): each access decodes its image
(lgvq.data.loader runs that in workers).
"""

from __future__ import annotations

import random
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from lgvq.data.base import ImageRecord
from lgvq.data.packed import PackedRecords
from lgvq.io import ArtifactError


def load_rgb(path, draft: tuple[int, int] | None = None) -> Image.Image:
    """The image at `path` as RGB. `draft` (w, h): a JPEG is decoded at the smallest of 1/1, 1/2,
    1/4, 1/8 of its size that is still at least w x h (libjpeg scales while it decodes: a 1024 px
    image read for 256 px costs a fraction of a full decode); other formats, and a JPEG that is not
    at least twice the size asked for, come out as without `draft`."""
    try:
        with Image.open(path) as im:
            if draft is not None and im.format == "JPEG":
                im.draft(im.mode, draft)
            return im.convert("RGB")
    except (OSError, UnidentifiedImageError) as e:
        raise ArtifactError(f"unreadable image {path}: {e}") from e


class ImageTextDataset(torch.utils.data.Dataset):
    def __init__(self, records: Sequence[ImageRecord], *, image_size: int, train: bool,
                 resize_mode: str = "resize", seed: int = 0, load_masks: bool = False,
                 jpeg_draft: bool = False) -> None:
        if len(records) == 0:
            raise ArtifactError("empty split: no image records")
        if resize_mode not in ("resize", "resize_crop"):
            raise ValueError(f"resize_mode must be 'resize' or 'resize_crop', got {resize_mode!r}")
        for r in records:
            if not r.captions:
                raise ArtifactError(f"image {r.path} has no captions")
        self.records = PackedRecords(records)  # one buffer: forked loader workers share it (packed.py)
        self.image_size = image_size
        self.train = train
        self.resize_mode = resize_mode
        self.seed = seed
        self.load_masks = load_masks
        self.jpeg_draft = jpeg_draft  # decode JPEGs at reduced size (load_rgb): not the authors' full decode
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def _rng(self, index: int) -> random.Random:
        return random.Random(self.seed * 1_000_003 + self.epoch * 10_007 + index)

    def _geometry(self, im: Image.Image, rng: random.Random, resample) -> tuple[Image.Image, bool]:
        S = self.image_size
        if self.resize_mode == "resize":
            return im.resize((S, S), resample), False
        w, h = im.size
        scale = S / min(w, h)
        im = im.resize((max(S, round(w * scale)), max(S, round(h * scale))), resample)
        w, h = im.size
        if self.train:
            x, y = rng.randint(0, w - S), rng.randint(0, h - S)
            flip = rng.random() < 0.5
        else:
            x, y, flip = (w - S) // 2, (h - S) // 2, False
        return im.crop((x, y, x + S, y + S)), flip

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        rng = self._rng(index)
        geo_state = rng.getstate()
        # Both modes need each side >= S before their resize (resize_crop: the short side), which is
        # what a draft of S x S keeps.
        src = load_rgb(rec.path, (self.image_size, self.image_size) if self.jpeg_draft else None)
        im, flip = self._geometry(src, rng, Image.BICUBIC)
        if flip:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        arr = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
        item: dict[str, Any] = {
            "image": torch.from_numpy(arr).permute(2, 0, 1).contiguous(),
            "captions": list(rec.captions),
            "caption": rec.captions[rng.randrange(len(rec.captions))] if self.train else rec.captions[0],
            "image_id": rec.image_id,
            "index": index,
        }
        if self.load_masks:
            if rec.mask_path is None:
                raise ArtifactError(f"image {rec.path} has no label map")
            from lgvq.data.formats import read_label_map

            label = Image.fromarray(read_label_map(rec.mask_path))
            # A label map may be stored at another resolution (CelebAMask-HQ: 512 px masks for
            # 1024 px images) but must have the image's aspect ratio, or the shared resize/crop
            # below would silently misalign labels and pixels.
            (iw, ih), (mw, mh) = src.size, label.size
            if abs(iw * mh - ih * mw) > 0.01 * iw * mh:
                raise ArtifactError(f"label map {rec.mask_path} is {mw}x{mh} but its image {rec.path} is {iw}x{ih} "
                                    "(different aspect ratio)")
            rng.setstate(geo_state)  # same crop/flip as the image
            mask, mflip = self._geometry(label, rng, Image.NEAREST)
            if mflip:
                mask = mask.transpose(Image.FLIP_LEFT_RIGHT)
            item["mask"] = torch.from_numpy(np.asarray(mask, dtype=np.int64).copy())
        return item
