"""LlamaGen's VQ tokenizers (Sun et al., 2024; `vq_ds16_c2i.pt` is VQ-16) from their release.

LlamaGen's VQModel is taming's encoder/decoder (ch 128, 2 res blocks, attention at the last
encoder level and the first decoder level, z_channels 256) with an 8-d codebook whose codes
and features are l2-normalised before the nearest-code search (cosine assignment). Its module
tree uses other names (`conv_blocks.{i}.res.{j}`, `mid.{0,1,2}`, decoder levels coarse to
fine), mapped here onto taming's tree. The release file is `{"model": state_dict}`; as in
LlamaGen's own evaluation scripts an "ema" entry is preferred and "state_dict" is the last
resort. The usage buffer `codebook_used` is ignored.

Not verified against LlamaGen's code running (it has no installable package): the layout and
arithmetic were built from its published vq_model.py; tests/test_pretrained_tokenizers.py
checks load, shapes and round trip on a state dict in that layout.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from lgvq.tokenizers.base import QuantizerOutput
from lgvq.tokenizers.pretrained.common import ConvQuantizedTokenizer, unwrap
from lgvq.tokenizers.pretrained.taming_nets import TamingDecoder, TamingEncoder
from lgvq.tokenizers.quantizers import VectorQuantizer

_MID = {"0": "block_1", "1": "attn_1", "2": "block_2"}


class L2NormQuantizer(VectorQuantizer):
    """Nearest code after l2-normalising both the features and the codes (LlamaGen's l2_norm)."""

    def weight(self) -> Tensor:
        return F.normalize(self.embedding.weight, p=2, dim=-1)

    def forward(self, z_e: Tensor) -> QuantizerOutput:
        z = F.normalize(z_e, p=2, dim=1)
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        return self._quantise(z, self.nearest(flat.detach()))


def llamagen_to_taming(key: str, levels: int) -> str:
    """One LlamaGen parameter name -> the name in taming's tree (other keys unchanged)."""
    m = re.match(r"(encoder|decoder)\.mid\.(\d)\.(.*)", key)
    if m:
        return f"{m[1]}.mid.{_MID[m[2]]}.{m[3]}"
    m = re.match(r"(encoder|decoder)\.conv_blocks\.(\d+)\.(res|attn|downsample|upsample)(.*)", key)
    if m:
        level = int(m[2]) if m[1] == "encoder" else levels - 1 - int(m[2])  # decoder: coarse to fine
        part = {"res": "block"}.get(m[3], m[3])
        return f"{m[1]}.{'down' if m[1] == 'encoder' else 'up'}.{level}.{part}{m[4]}"
    if key.startswith("quantize."):
        return "quantizer." + key[len("quantize."):]
    return key


class LlamaGenVQ(ConvQuantizedTokenizer):
    project = "LlamaGen VQ"

    def __init__(self, *, image_size: int, codebook_size: int = 16384, codebook_embed_dim: int = 8,
                 codebook_l2_norm: bool = True, ch_mult: Sequence[int] = (1, 1, 2, 2, 4), ch: int = 128,
                 num_res_blocks: int = 2, z_channels: int = 256, dropout: float = 0.0,
                 commit_loss_beta: float = 0.25, **common: Any) -> None:
        super().__init__(image_size=image_size, **common)
        self.levels = len(ch_mult)
        net = dict(ch=ch, ch_mult=tuple(ch_mult), num_res_blocks=num_res_blocks, attn_levels={self.levels - 1},
                   z_channels=z_channels, dropout=dropout)
        self.encoder, self.decoder = TamingEncoder(**net), TamingDecoder(**net)
        self.quant_conv = nn.Conv2d(z_channels, codebook_embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(codebook_embed_dim, z_channels, 1)
        self.quantizer = (L2NormQuantizer if codebook_l2_norm else VectorQuantizer)(codebook_size, codebook_embed_dim)
        self.codebook_size, self.embed_dim, self.beta = codebook_size, codebook_embed_dim, commit_loss_beta
        self._set_grid(2 ** (self.levels - 1))

    def quantizer_losses(self, out) -> dict[str, Tensor]:
        # LlamaGen: vq_loss + beta * commit_loss (beta on the encoder's commitment)
        return {k: (self.beta if k == "commit" else 1.0) * v for k, v in out.quant.losses.items()}

    def convert_checkpoint(self, payload: Any, source: str) -> dict[str, Tensor]:
        # LlamaGen's own evaluation scripts take "ema" first, then "model", then "state_dict"
        state = unwrap(payload, ("ema", "model", "state_dict"), source)
        renamed = {llamagen_to_taming(k, self.levels): v for k, v in state.items() if not k.endswith("codebook_used")}
        return self.load_checked(renamed, source)
