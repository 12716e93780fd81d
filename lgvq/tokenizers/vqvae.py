"""VQ-VAE (van den Oord et al., 2017) with the taming-transformers encoder/decoder.

x -> Encoder -> 1x1 conv to embed_dim -> VectorQuantizer -> 1x1 conv -> Decoder -> x_rec.
Loss (PAPER.md Eq. 2): ||x - x_rec||^2 + ||sg[z_e] - z_q||^2 + beta ||z_e - sg[z_q]||^2.

`beta_on` says which VQ term beta weights: "commit" (Eq. 2, the original VQ-VAE, CVQ's code) or
"codebook" (taming-transformers' VectorQuantizer2 with its default legacy=True, which the
authors' VQ-GAN and VQ-GAN+LG use: the encoder's commitment at weight 1, the codebook at beta).
"""

from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from lgvq.tokenizers.base import QuantizerOutput, Tokenizer, TokenizerOutput
from lgvq.tokenizers.nets import Decoder, Encoder
from lgvq.tokenizers.quantizers import VectorQuantizer


class VQVAE(Tokenizer):
    def __init__(self, *, image_size: int, ch: int = 128, ch_mult: Sequence[int] = (1, 1, 2, 2, 4),
                 num_res_blocks: int = 2, attn_resolutions: Sequence[int] = (16,), z_channels: int = 256,
                 embed_dim: int = 256, n_embed: int = 1024, beta: float = 0.25, dropout: float = 0.0,
                 codebook_weight: float = 1.0, beta_on: str = "commit") -> None:
        super().__init__()
        net = dict(ch=ch, ch_mult=tuple(ch_mult), num_res_blocks=num_res_blocks,
                   attn_resolutions=tuple(attn_resolutions), resolution=image_size, z_channels=z_channels,
                   dropout=dropout)
        self.encoder = Encoder(**net)
        self.decoder = Decoder(**net)
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)
        self.quantizer = self.make_quantizer(n_embed, embed_dim)
        self.codebook_size, self.embed_dim = n_embed, embed_dim
        self.downsample = 2 ** (len(ch_mult) - 1)
        if image_size % self.downsample:
            raise ValueError(f"image_size {image_size} is not divisible by the downsampling factor {self.downsample}")
        if beta_on not in ("commit", "codebook"):
            raise ValueError(f"beta_on must be 'commit' (PAPER.md Eq. 2) or 'codebook' (taming's legacy VQ), got {beta_on!r}")
        self.beta, self.codebook_weight, self.beta_on = beta, codebook_weight, beta_on

    def make_quantizer(self, n_embed: int, embed_dim: int) -> VectorQuantizer:
        return VectorQuantizer(n_embed, embed_dim)

    def quantize(self, x: Tensor) -> QuantizerOutput:
        return self.quantizer(self.quant_conv(self.encoder(x)))

    def decode(self, z_q: Tensor) -> Tensor:
        return self.decoder(self.post_quant_conv(z_q))

    def forward(self, x: Tensor) -> TokenizerOutput:
        q = self.quantize(x)
        return TokenizerOutput(self.decode(q.z_q), q)

    def encode_codes(self, x: Tensor) -> Tensor:
        """The codes without the decoder (the base class runs forward: encode, quantise, decode), so encoding
        a split costs the encoder's work, not a whole reconstruction per batch."""
        return self.quantize(x).codes

    def encode_latents(self, x: Tensor) -> Tensor:
        """z_q without the decoder (the evaluations that read latents: the ridge map, masked-word recall)."""
        return self.quantize(x).z_q

    def decode_codes(self, codes: Tensor) -> Tensor:
        return self.decode(self.quantizer.lookup(codes))

    def codebook(self) -> Tensor:
        return self.quantizer.weight()

    def vq_losses(self, out: TokenizerOutput) -> dict[str, Tensor]:
        """The quantiser's terms times codebook_weight, beta on the term `beta_on` names; any
        further quantiser term (CVQ's "contrastive") at codebook_weight."""
        return {name: self.codebook_weight * (self.beta if name == self.beta_on else 1.0) * term
                for name, term in out.quant.losses.items()}

    def generator_losses(self, x: Tensor, out: TokenizerOutput, step: int) -> dict[str, Tensor]:
        return {"rec": F.mse_loss(out.x_rec, x), **self.vq_losses(out)}

    def describe(self) -> dict:
        return {**super().describe(), "loss": f"MSE + {self._vq_terms()}", "perceptual": "n/a"}

    def _vq_terms(self) -> str:
        return ("codebook + {b} commit" if self.beta_on == "commit" else "{b} codebook + commit").format(b=self.beta)
