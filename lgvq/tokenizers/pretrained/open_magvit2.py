"""Open-MAGVIT2's LFQ tokenizer (Luo et al., 2024; TencentARC's release) from its checkpoints.

Its network is not taming's: bias-free 3x3 convs in the residual blocks, no attention,
`num_res_blocks` residual blocks in the middle, a stride-2 conv to go down, a conv to 4x the
channels + depth-to-space to go up, and before each decoder level an adaptive group norm
whose scale and shift are linear maps of the per-channel std and mean of the quantised
latent. The quantiser is lookup-free: each of the `z_channels` (= log2 K, 18 for K = 2^18)
dimensions is its sign, and the code index is sum_i [z_i > 0] 2^i. Params mirror the release
YAMLs (ddconfig ch, ch_mult, num_res_blocks, z_channels; n_embed). The checkpoint is the
release's Lightning `.ckpt` (`state_dict`); `use_ema: true` reads the EMA copy it keeps under
`model_ema.` instead (the names with their dots removed, as LitEma stores them).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lgvq.io import ArtifactError
from lgvq.tokenizers.base import QuantizerOutput
from lgvq.tokenizers.pretrained.common import PretrainedTokenizer, unwrap


def _gn(ch: int, affine: bool = True) -> nn.GroupNorm:
    return nn.GroupNorm(32, ch, eps=1e-6, affine=affine)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = _gn(cin), _gn(cout)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(x))))))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class Upsampler(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, 4 * ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        # depth-to-space in DCR order: the 4 sub-pixels are the *outer* channel blocks (not
        # pixel_shuffle's inner order), as the release's weights expect
        y = self.conv1(x)
        b, c, h, w = y.shape
        return y.view(b, 2, 2, c // 4, h, w).permute(0, 3, 4, 1, 5, 2).reshape(b, c // 4, 2 * h, 2 * w)


class AdaptiveGroupNorm(nn.Module):
    def __init__(self, z_channels: int, ch: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.gn, self.eps = _gn(ch, affine=False), eps
        self.gamma, self.beta = nn.Linear(z_channels, ch), nn.Linear(z_channels, ch)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        flat = style.flatten(2)
        # the *unbiased* variance (torch's default, which the release's code calls), whatever
        # its comment says: the weights were trained with it. A 1x1 latent (the codebook picture
        # decodes each code alone) has none, and the release's code gives NaN: the population
        # variance (0) there instead
        var = flat.var(-1, unbiased=flat.shape[-1] > 1)
        scale = self.gamma((var + self.eps).sqrt())[..., None, None]
        return self.gn(x) * scale + self.beta(flat.mean(-1))[..., None, None]


def _level(blocks: list[nn.Module]) -> nn.Module:
    level = nn.Module()
    level.block = nn.ModuleList(blocks)
    return level


class MagvitEncoder(nn.Module):
    def __init__(self, *, ch: int, ch_mult: Sequence[int], num_res_blocks: int, z_channels: int) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, ch, 3, padding=1, bias=False)
        self.down, cin = nn.ModuleList(), ch
        for i, mult in enumerate(ch_mult):
            blocks = []
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(cin, ch * mult))
                cin = ch * mult
            level = _level(blocks)
            if i < len(ch_mult) - 1:
                level.downsample = nn.Conv2d(cin, cin, 3, stride=2, padding=1)
            self.down.append(level)
        self.mid_block = nn.ModuleList(ResBlock(cin, cin) for _ in range(num_res_blocks))
        self.norm_out, self.conv_out = _gn(cin), nn.Conv2d(cin, z_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for level in self.down:
            for block in level.block:
                h = block(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        for block in self.mid_block:
            h = block(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class MagvitDecoder(nn.Module):
    def __init__(self, *, ch: int, ch_mult: Sequence[int], num_res_blocks: int, z_channels: int) -> None:
        super().__init__()
        cin = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, cin, 3, padding=1)
        self.mid_block = nn.ModuleList(ResBlock(cin, cin) for _ in range(num_res_blocks))
        levels, adaptive = [], []
        for i in reversed(range(len(ch_mult))):
            adaptive.insert(0, AdaptiveGroupNorm(z_channels, cin))
            blocks = []
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(cin, ch * ch_mult[i]))
                cin = ch * ch_mult[i]
            level = _level(blocks)
            if i > 0:
                level.upsample = Upsampler(cin)
            levels.insert(0, level)
        self.up, self.adaptive = nn.ModuleList(levels), nn.ModuleList(adaptive)
        self.norm_out, self.conv_out = _gn(cin), nn.Conv2d(cin, 3, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        style, h = z, self.conv_in(z)
        for block in self.mid_block:
            h = block(h)
        for i in reversed(range(len(self.up))):
            h = self.adaptive[i](h, style)
            for block in self.up[i].block:
                h = block(h)
            if i > 0:
                h = self.up[i].upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))

    @property
    def last_layer(self) -> Tensor:
        return self.conv_out.weight


class LookupFreeQuantizer(nn.Module):
    """Sign quantisation; index = sum_i [z_i > 0] 2^i. Unweighted "commit" = ||z - sg[sign z]||^2."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.register_buffer("bits", 2 ** torch.arange(dim), persistent=False)

    def forward(self, z: Tensor) -> QuantizerOutput:
        q = torch.where(z > 0, 1.0, -1.0).to(z.dtype)
        codes = ((z > 0).long() * self.bits[None, :, None, None]).sum(1)
        return QuantizerOutput(z + (q - z).detach(), codes, {"commit": F.mse_loss(z, q.detach())}, z)

    def lookup(self, codes: Tensor) -> Tensor:
        return ((codes[:, None] & self.bits[None, :, None, None]) != 0).float() * 2 - 1

    def weight(self) -> Tensor:
        idx = torch.arange(2 ** self.dim, device=self.bits.device)
        return ((idx[:, None] & self.bits[None]) != 0).float() * 2 - 1


class OpenMagvit2(PretrainedTokenizer):
    project = "Open-MAGVIT2 LFQ"

    def __init__(self, *, image_size: int, n_embed: int = 2 ** 18, ch: int = 128, ch_mult: Sequence[int] = (1, 1, 2, 2, 4),
                 num_res_blocks: int = 4, z_channels: int = 18, commit_weight: float = 0.25, use_ema: bool = False,
                 **common: Any) -> None:
        super().__init__(image_size=image_size, **common)
        if 2 ** z_channels != n_embed:
            raise ValueError(f"n_embed {n_embed} must be 2 ** z_channels ({2 ** z_channels}): LFQ has one bit per channel")
        net = dict(ch=ch, ch_mult=tuple(ch_mult), num_res_blocks=num_res_blocks, z_channels=z_channels)
        self.encoder, self.decoder = MagvitEncoder(**net), MagvitDecoder(**net)
        self.quantizer = LookupFreeQuantizer(z_channels)
        self.codebook_size, self.embed_dim = n_embed, z_channels
        self.commit_weight, self.use_ema = commit_weight, use_ema
        self._set_grid(2 ** (len(ch_mult) - 1))

    def quantize(self, x: Tensor) -> QuantizerOutput:
        return self.quantizer(self.encoder(x))

    def decode(self, z_q: Tensor) -> Tensor:
        return self.decoder(z_q)

    def lookup(self, codes: Tensor) -> Tensor:
        return self.quantizer.lookup(codes)

    def codebook(self) -> Tensor:
        return self.quantizer.weight()

    def quantizer_losses(self, out) -> dict[str, Tensor]:
        # the release's commitment at its weight; its entropy penalty is not applied when fine-tuning
        return {"commit": self.commit_weight * out.quant.losses["commit"]}

    def convert_checkpoint(self, payload: Any, source: str) -> dict[str, Tensor]:
        state = unwrap(payload, ("state_dict",), source)
        if self.use_ema:
            ema = {k[len("model_ema."):]: v for k, v in state.items() if k.startswith("model_ema.")}
            if not ema:
                raise ArtifactError(f"{source}: use_ema is set but the checkpoint has no model_ema.* weights")
            state = {k: ema[k.replace(".", "")] for k in self.state_dict() if k.replace(".", "") in ema}
        return self.load_checked(state, source)

    def describe(self) -> dict:
        return {**super().describe(), "quantizer": f"lookup-free, {self.embed_dim} bits", "ema": self.use_ema}


