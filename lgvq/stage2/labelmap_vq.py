"""The conditioning stage of semantic synthesis, as in VQ-GAN: a VQ model trained on label maps.

A label map (H, W) of class ids is one-hot encoded, encoded to an h x w grid (the image
tokenizer's grid, so condition and image tokens align), quantised with its own codebook and
decoded back to class logits; training minimises per-pixel cross-entropy + the VQ terms. Its
codes are the prefix the second-stage GPT continues with image codes. Trained once per dataset
(rule `labelmap_vq`), shared by every tokenizer's semantic-synthesis job.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lgvq.tokenizers.nets import Decoder, Encoder
from lgvq.tokenizers.quantizers import VectorQuantizer


# The width of every label-map VQ before stage2.labelmap_ch (its schema default): the hash and checkpoints of before.
DEFAULT_CH = 32


class LabelMapVQ(nn.Module):
    def __init__(self, n_classes: int, image_size: int, grid: int, *, ch: int = DEFAULT_CH, n_embed: int = 128,
                 embed_dim: int = 32, beta: float = 0.25) -> None:
        super().__init__()
        f = image_size // grid
        if image_size % grid or f & (f - 1):
            raise ValueError(f"label maps of {image_size} px cannot be encoded to a {grid}x{grid} grid "
                             "(the factor must be a power of two)")
        net = dict(ch=ch, ch_mult=(1,) + (2,) * int(math.log2(f)), num_res_blocks=1, attn_resolutions=(),
                   resolution=image_size, z_channels=embed_dim)
        self.n_classes, self.grid, self.beta = n_classes, grid, beta
        self.encoder = Encoder(in_channels=n_classes, **net)
        self.decoder = Decoder(out_channels=n_classes, **net)
        self.quantizer = VectorQuantizer(n_embed, embed_dim)

    def _onehot(self, label_maps: Tensor) -> Tensor:
        if int(label_maps.max()) >= self.n_classes:
            raise ValueError(f"label map class {int(label_maps.max())} >= n_classes {self.n_classes}")
        return F.one_hot(label_maps.long(), self.n_classes).permute(0, 3, 1, 2).float()

    def loss(self, label_maps: Tensor) -> dict[str, Tensor]:
        q = self.quantizer(self.encoder(self._onehot(label_maps)))
        logits = self.decoder(q.z_q)
        return {"ce": F.cross_entropy(logits, label_maps.long()), "codebook": q.losses["codebook"],
                "commit": self.beta * q.losses["commit"]}

    @torch.no_grad()
    def encode(self, label_maps: Tensor) -> Tensor:
        """(B, H, W) class ids -> (B, grid, grid) condition codes."""
        return self.quantizer(self.encoder(self._onehot(label_maps))).codes

    @torch.no_grad()
    def reconstruct(self, label_maps: Tensor) -> Tensor:
        return self.decoder(self.quantizer(self.encoder(self._onehot(label_maps))).z_q).argmax(1)
