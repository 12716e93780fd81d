"""The tokenizer interface every first-stage model implements.

A tokenizer maps images in [-1, 1] (B, 3, H, W) to a grid of discrete codes (B, h, w) and
back. The training loop (lgvq.train) and the language-guided module (lgvq.lg) only talk to
this interface, so a new tokenizer is one file + one config entry (`class: module:MyTokenizer`):

    class MyTokenizer(Tokenizer):
        def forward(self, x) -> TokenizerOutput: ...        # encode + quantise + decode
        def decode_codes(self, codes) -> Tensor: ...        # (B, h, w) -> image
        def codebook(self) -> Tensor: ...                   # (K, D) code vectors
        def generator_losses(self, x, out, step) -> dict    # weighted terms, summed by the loop
        # optional, for adversarial models:
        def discriminator_losses(self, x, out, step) -> dict

`generator_losses` returns *already weighted* scalar terms keyed by name (e.g.
"rec", "codebook", "commit", "perceptual", "gan"); the loop sums them, adds any
language-guided terms, and logs each one. Models never read config files: constructors
take typed arguments and the registry maps config entries onto them.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import ClassVar, Iterable

import torch
from torch import Tensor, nn

from lgvq.tokenizers.needs import Needs


@dataclass
class QuantizerOutput:
    z_q: Tensor            # (B, D, h, w) quantised features, straight-through to the encoder
    codes: Tensor          # (B, h, w) int64 code indices
    losses: dict[str, Tensor] = field(default_factory=dict)  # unweighted codebook/commit terms
    z_e: Tensor | None = None  # (B, D, h, w) pre-quantisation features (for stats / anchors)


@dataclass
class TokenizerOutput:
    x_rec: Tensor          # (B, 3, H, W) reconstruction in [-1, 1] (not clamped)
    quant: QuantizerOutput

    @property
    def z_q(self) -> Tensor:
        return self.quant.z_q

    @property
    def codes(self) -> Tensor:
        return self.quant.codes


class Tokenizer(nn.Module, metaclass=abc.ABCMeta):
    """Abstract base class. Subclasses set `codebook_size`, `embed_dim` and `downsample` in __init__,
    implement the abstract methods, and declare in `needs` what the pipeline must hand them."""

    codebook_size: int
    embed_dim: int
    downsample: int
    needs: ClassVar[Needs] = Needs()

    # What a manifest/table should know about this model's loss (e.g. perceptual off).
    def describe(self) -> dict:
        return {"class": type(self).__name__, "codebook_size": self.codebook_size,
                "embed_dim": self.embed_dim, "downsample": self.downsample}

    @abc.abstractmethod
    def forward(self, x: Tensor) -> TokenizerOutput:  # pragma: no cover - interface
        raise NotImplementedError

    @torch.no_grad()
    def encode_codes(self, x: Tensor) -> Tensor:
        """Images -> (B, h, w) codes. Default: run forward and keep the codes."""
        return self.forward(x).codes

    def encode_latents(self, x: Tensor) -> Tensor:
        """Images -> (B, D, h, w) quantised latents z_q. Default: run forward and keep z_q (a subclass that can
        quantise without decoding overrides this and `encode_codes`)."""
        return self.forward(x).z_q

    @abc.abstractmethod
    def decode_codes(self, codes: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    @abc.abstractmethod
    def codebook(self) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    @abc.abstractmethod
    def generator_losses(self, x: Tensor, out: TokenizerOutput, step: int) -> dict[str, Tensor]:
        raise NotImplementedError  # pragma: no cover - interface

    def discriminator_losses(self, x: Tensor, out: TokenizerOutput, step: int) -> dict[str, Tensor]:
        """Adversarial models override this; the loop skips the discriminator step when empty."""
        return {}

    def generator_parameters(self) -> Iterable[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith("discriminator.")]

    def discriminator_parameters(self) -> Iterable[nn.Parameter]:
        return [p for n, p in self.named_parameters() if n.startswith("discriminator.")]
