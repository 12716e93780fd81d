"""FSQ: the VQ-VAE backbone with its quantiser replaced by finite scalar quantisation
(Mentzer et al., 2023) from an established external library, `vector-quantize-pytorch`.

This is the harness's worked example of comparing a new tokenizer in the paper's protocol with
someone else's implementation: the library's `FSQ` module is wrapped behind our quantiser
interface (`forward -> QuantizerOutput`, `lookup`, `weight`) and the rest is inherited. FSQ has
an implicit codebook (the product of `levels`, e.g. [8, 5, 5, 5] -> 1000 codes) and no codebook
or commitment loss, so the only generator term is reconstruction.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from lgvq.tokenizers.base import QuantizerOutput, TokenizerOutput
from lgvq.tokenizers.vqvae import VQVAE


class FSQQuantizer(nn.Module):
    """vector_quantize_pytorch.FSQ behind the interface of lgvq.tokenizers.quantizers."""

    def __init__(self, levels: Sequence[int], dim: int) -> None:
        super().__init__()
        from vector_quantize_pytorch import FSQ

        # dim != len(levels): the library projects dim -> len(levels) and back (learned, biased)
        self.fsq = FSQ(levels=list(levels), dim=dim)
        self.n_embed = int(math.prod(levels))

    def forward(self, z: Tensor) -> QuantizerOutput:
        z_q, codes = self.fsq(z)  # (B, D, h, w) channel-first in, same layout out
        return QuantizerOutput(z_q, codes.long(), {}, z_e=z)

    def lookup(self, codes: Tensor) -> Tensor:
        return self.fsq.indices_to_codes(codes)

    def weight(self) -> Tensor:
        import torch

        return self.fsq.indices_to_codes(torch.arange(self.n_embed, device=next(self.parameters()).device))


class FSQTokenizer(VQVAE):
    def __init__(self, *, image_size: int, levels: Sequence[int] = (8, 5, 5, 5), **vq_params) -> None:
        if "n_embed" in vq_params:
            raise ValueError("fsq: the codebook size is the product of `levels`; remove `n_embed` from its params")
        self.levels = tuple(int(v) for v in levels)
        if not self.levels or min(self.levels) < 3:
            raise ValueError(f"FSQ levels must be integers >= 3 (the library needs preserve_symmetry for 2), got {list(levels)}")
        super().__init__(image_size=image_size, n_embed=math.prod(self.levels), **vq_params)

    def make_quantizer(self, n_embed: int, embed_dim: int) -> FSQQuantizer:
        return FSQQuantizer(self.levels, embed_dim)

    def generator_losses(self, x: Tensor, out: TokenizerOutput, step: int) -> dict[str, Tensor]:
        return {"rec": F.mse_loss(out.x_rec, x)}

    def describe(self) -> dict:
        from importlib.metadata import version

        return {**super().describe(), "loss": "MSE (FSQ has no codebook loss)", "levels": list(self.levels),
                "quantizer": f"vector-quantize-pytorch {version('vector-quantize-pytorch')} FSQ"}
