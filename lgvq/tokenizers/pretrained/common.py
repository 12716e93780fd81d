"""What the adapters of published tokenizers share: reading a checkpoint in its project's own
format, the image size the model runs at, and the loss used when one is fine-tuned.

An adapter is built with random weights from its project's configuration (the params of the
config entry); `convert_checkpoint` turns the project's file (a Lightning `last.ckpt`, a bare
state dict, LlamaGen's `{"model": ...}`) into this module's state dict, checking every key and
shape so a checkpoint of another configuration fails naming the mismatch, never half-loaded.

Images: every adapted project trains on images in [-1, 1] (taming: x / 127.5 - 1; Open-MAGVIT2
and LlamaGen: Normalize(0.5, 0.5)), the harness's convention too, so no value rescaling is
needed; a model that wanted another range would override `to_model` / `from_model`.
Resolution: the networks are convolutional and run at the dataset's image size by default.
`input_size` resizes images to the size the checkpoint was trained at (bilinear, antialiased)
and the reconstructions back, so a 256-px model can be scored on 128-px data; the code grid is
then input_size / f on a side and `downsample` is the dataset-size factor the grid implies.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from lgvq.io import ArtifactError
from lgvq.tokenizers.base import QuantizerOutput, Tokenizer, TokenizerOutput
from lgvq.tokenizers.needs import Needs


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def unwrap(payload: Any, containers: tuple[str, ...], source: str) -> dict[str, Tensor]:
    """The tensor dict inside a checkpoint: the first of `containers` present, else the payload."""
    if not isinstance(payload, Mapping):
        raise ArtifactError(f"{source}: not a state dict or a checkpoint dict (got {type(payload).__name__})")
    for key in containers:
        if isinstance(payload.get(key), Mapping):
            return dict(payload[key])
    return dict(payload)


class PretrainedTokenizer(Tokenizer):
    """Base of the adapters. Subclasses build their networks, then call `_set_grid`."""

    needs = Needs(pretrained_weights=True)  # random weights are never a result: a checkpoint or init_from is required
    project = "?"

    def __init__(self, *, image_size: int, input_size: int | None = None, rec_loss: str = "l1",
                 perceptual_weights: str | None = None, perceptual_weight: float = 1.0) -> None:
        super().__init__()
        if rec_loss not in ("l1", "mse"):
            raise ValueError(f"rec_loss must be 'l1' or 'mse', got {rec_loss!r}")
        self.image_size, self.input_size, self.rec_loss = image_size, input_size or image_size, rec_loss
        self.perceptual = None
        if perceptual_weights:  # fine-tuning only; a frozen model never computes a loss
            from lgvq.tokenizers.perceptual import VGGPerceptual

            self.perceptual = VGGPerceptual(perceptual_weights)
        self.perceptual_weight = perceptual_weight

    def _set_grid(self, factor: int) -> None:
        """`factor`: the network's own downsampling. Grid side = input_size / factor."""
        if self.input_size % factor:
            raise ValueError(f"input_size {self.input_size} is not divisible by the downsampling factor {factor}")
        grid = self.input_size // factor
        if self.image_size % grid:
            raise ValueError(f"image_size {self.image_size} is not a multiple of the {grid}x{grid} code grid "
                             f"(input_size {self.input_size} / f{factor})")
        self.native_downsample, self.downsample = factor, self.image_size // grid

    # -- the model's own path; subclasses implement these three ------------------------------
    def quantize(self, x: Tensor) -> QuantizerOutput:  # pragma: no cover - interface
        raise NotImplementedError

    def decode(self, z_q: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def lookup(self, codes: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def convert_checkpoint(self, payload: Any, source: str) -> dict[str, Tensor]:  # pragma: no cover
        raise NotImplementedError

    # -- the harness's interface ------------------------------------------------------------
    def to_model(self, x: Tensor) -> Tensor:
        if self.input_size == x.shape[-1]:
            return x
        return F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", antialias=True,
                             align_corners=False)

    def from_model(self, y: Tensor) -> Tensor:
        if self.image_size == y.shape[-1]:
            return y
        return F.interpolate(y, size=(self.image_size, self.image_size), mode="bilinear", antialias=True,
                             align_corners=False)

    def forward(self, x: Tensor) -> TokenizerOutput:
        q = self.quantize(self.to_model(x))
        return TokenizerOutput(self.from_model(self.decode(q.z_q)), q)

    @torch.no_grad()
    def encode_codes(self, x: Tensor) -> Tensor:
        return self.quantize(self.to_model(x)).codes

    def decode_codes(self, codes: Tensor) -> Tensor:
        return self.from_model(self.decode(self.lookup(codes)))

    def quantizer_losses(self, out: TokenizerOutput) -> dict[str, Tensor]:
        return dict(out.quant.losses)

    def generator_losses(self, x: Tensor, out: TokenizerOutput, step: int) -> dict[str, Tensor]:
        """Fine-tuning loss: reconstruction (+ perceptual) + the quantiser's own terms, no GAN."""
        rec = (out.x_rec - x).abs().mean() if self.rec_loss == "l1" else F.mse_loss(out.x_rec, x)
        terms = {"rec": rec, **self.quantizer_losses(out)}
        if self.perceptual is not None:
            terms["perceptual"] = self.perceptual_weight * self.perceptual(out.x_rec, x)
        return terms

    def generator_parameters(self):
        return [p for n, p in self.named_parameters() if not n.startswith("perceptual.")]

    def load_checked(self, state: dict[str, Tensor], source: str) -> dict[str, Tensor]:
        """`state` restricted to this model's keys, after checking that every key is there with
        its shape: the error names the first few mismatches and the configuration to fix."""
        own = {k: v for k, v in self.state_dict().items() if not k.startswith("perceptual.")}
        missing = [k for k in own if k not in state]
        wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in own.items()
                 if k in state and tuple(state[k].shape) != tuple(v.shape)]
        if missing or wrong:
            detail = "; ".join([*(f"missing {k}" for k in missing[:4]), *wrong[:4]])
            raise ArtifactError(f"{source}: not a {self.project} checkpoint of this configuration "
                                f"({len(missing)} missing, {len(wrong)} mis-shaped: {detail}); check the entry's params")
        out = {k: state[k].to(own[k].dtype) for k in own}
        if self.perceptual is not None:
            out.update({k: v for k, v in self.state_dict().items() if k.startswith("perceptual.")})
        return out

    def describe(self) -> dict:
        return {**super().describe(), "pretrained": self.project, "input_size": self.input_size,
                "native_downsample": self.native_downsample,
                "loss": f"fine-tuning only: {self.rec_loss} rec" + (" + perceptual" if self.perceptual else "")
                        + " + quantiser terms, no GAN"}


class ConvQuantizedTokenizer(PretrainedTokenizer):
    """taming's layout, which LlamaGen's VQ keeps: encoder -> 1x1 quant_conv -> quantizer ->
    1x1 post_quant_conv -> decoder. Subclasses build those five modules."""

    def quantize(self, x: Tensor) -> QuantizerOutput:
        return self.quantizer(self.quant_conv(self.encoder(x)))

    def decode(self, z_q: Tensor) -> Tensor:
        return self.decoder(self.post_quant_conv(z_q))

    def lookup(self, codes: Tensor) -> Tensor:
        return self.quantizer.lookup(codes)

    def codebook(self) -> Tensor:
        return self.quantizer.weight()
