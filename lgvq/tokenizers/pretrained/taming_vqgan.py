"""taming-transformers' VQGAN (Esser et al., CVPR 2021) from its published checkpoints.

Params are those of taming's YAMLs (model.params): `n_embed`, `embed_dim` and ddconfig's
`ch`, `ch_mult`, `num_res_blocks`, `attn_resolutions`, `z_channels`, `resolution` (the size
the model was trained at: it fixes where the attention blocks are). The ImageNet f16 models:
K=1024 and K=16384, both ch 128, ch_mult [1,1,2,2,4], 2 res blocks, attention at 16,
z_channels 256, embed_dim 256. The checkpoint is taming's Lightning `last.ckpt` (its
`state_dict`; the loss's LPIPS and discriminator weights are ignored) or a bare state dict.
"""

from __future__ import annotations

from typing import Any, Sequence

from torch import Tensor, nn

from lgvq.tokenizers.pretrained.common import ConvQuantizedTokenizer, unwrap
from lgvq.tokenizers.pretrained.taming_nets import TamingDecoder, TamingEncoder
from lgvq.tokenizers.quantizers import VectorQuantizer


def attention_levels(attn_resolutions: Sequence[int], resolution: int, levels: int) -> set[int]:
    """taming puts attention where the feature map's side (at the training resolution) is listed."""
    return {i for i in range(levels) if resolution // 2 ** i in attn_resolutions}


class TamingVQGAN(ConvQuantizedTokenizer):
    project = "taming-transformers VQGAN"

    def __init__(self, *, image_size: int, n_embed: int = 1024, embed_dim: int = 256, ch: int = 128,
                 ch_mult: Sequence[int] = (1, 1, 2, 2, 4), num_res_blocks: int = 2,
                 attn_resolutions: Sequence[int] = (16,), z_channels: int = 256, resolution: int = 256,
                 dropout: float = 0.0, beta: float = 0.25, legacy: bool = True, **common: Any) -> None:
        super().__init__(image_size=image_size, **common)
        attn = attention_levels(attn_resolutions, resolution, len(ch_mult))
        net = dict(ch=ch, ch_mult=tuple(ch_mult), num_res_blocks=num_res_blocks, attn_levels=attn,
                   z_channels=z_channels, dropout=dropout)
        self.encoder, self.decoder = TamingEncoder(**net), TamingDecoder(**net)
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)
        self.quantizer = VectorQuantizer(n_embed, embed_dim)
        self.codebook_size, self.embed_dim, self.beta, self.legacy = n_embed, embed_dim, beta, legacy
        self._set_grid(2 ** (len(ch_mult) - 1))

    def quantizer_losses(self, out) -> dict[str, Tensor]:
        # taming's VectorQuantizer2(legacy=True), which its released models were trained with,
        # puts beta on the codebook term and weight 1 on the encoder's commitment
        scaled = "codebook" if self.legacy else "commit"
        return {k: (self.beta if k == scaled else 1.0) * v for k, v in out.quant.losses.items()}

    def convert_checkpoint(self, payload: Any, source: str) -> dict[str, Tensor]:
        state = unwrap(payload, ("state_dict",), source)
        renamed = {("quantizer." + k[len("quantize."):] if k.startswith("quantize.") else k): v
                   for k, v in state.items() if not k.startswith("loss.")}
        return self.load_checked(renamed, source)
