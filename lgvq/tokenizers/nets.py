"""Convolutional encoder and decoder in the taming-transformers style.

Encoder: conv_in -> per level [num_res_blocks ResNet blocks (+ attention at the listed
resolutions)] -> downsample (except the last level) -> middle (res, attn, res) -> norm,
swish, conv_out to z_channels. The decoder mirrors it. Downsampling factor f =
2 ** (len(ch_mult) - 1): the paper's ch_mult [1,1,2,2,4] gives f = 16 (256 px -> 16x16 codes).
"""

from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn


def norm(ch: int) -> nn.GroupNorm:
    # 32 groups as in taming-transformers, fewer when a small config has fewer channels
    groups = 32 if ch % 32 == 0 else (8 if ch % 8 == 0 else 1)
    return nn.GroupNorm(groups, ch, eps=1e-6)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1, self.conv1 = norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over spatial positions."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.norm = norm(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return x + self.proj(out.transpose(1, 2).reshape(b, c, h, w))


class Encoder(nn.Module):
    def __init__(self, *, in_channels: int = 3, ch: int = 128, ch_mult: Sequence[int] = (1, 1, 2, 2, 4),
                 num_res_blocks: int = 2, attn_resolutions: Sequence[int] = (16,), resolution: int = 256,
                 z_channels: int = 256, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        blocks: list[nn.Module] = []
        cin, res = ch, resolution
        for level, mult in enumerate(ch_mult):
            cout = ch * mult
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(cin, cout, dropout))
                cin = cout
                if res in attn_resolutions:
                    blocks.append(AttnBlock(cin))
            if level != len(ch_mult) - 1:
                blocks.append(nn.Conv2d(cin, cin, 3, stride=2, padding=1))
                res //= 2
        self.down = nn.Sequential(*blocks)
        self.mid = nn.Sequential(ResBlock(cin, cin, dropout), AttnBlock(cin), ResBlock(cin, cin, dropout))
        self.norm_out = norm(cin)
        self.conv_out = nn.Conv2d(cin, z_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.mid(self.down(self.conv_in(x)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Upsample(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Decoder(nn.Module):
    def __init__(self, *, out_channels: int = 3, ch: int = 128, ch_mult: Sequence[int] = (1, 1, 2, 2, 4),
                 num_res_blocks: int = 2, attn_resolutions: Sequence[int] = (16,), resolution: int = 256,
                 z_channels: int = 256, dropout: float = 0.0) -> None:
        super().__init__()
        cin = ch * ch_mult[-1]
        res = resolution // 2 ** (len(ch_mult) - 1)
        self.conv_in = nn.Conv2d(z_channels, cin, 3, padding=1)
        self.mid = nn.Sequential(ResBlock(cin, cin, dropout), AttnBlock(cin), ResBlock(cin, cin, dropout))
        blocks: list[nn.Module] = []
        for level in reversed(range(len(ch_mult))):
            cout = ch * ch_mult[level]
            for _ in range(num_res_blocks + 1):
                blocks.append(ResBlock(cin, cout, dropout))
                cin = cout
                if res in attn_resolutions:
                    blocks.append(AttnBlock(cin))
            if level != 0:
                blocks.append(Upsample(cin))
                res *= 2
        self.up = nn.Sequential(*blocks)
        self.norm_out = norm(cin)
        self.conv_out = nn.Conv2d(cin, out_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.up(self.mid(self.conv_in(z)))
        return self.conv_out(F.silu(self.norm_out(h)))

    @property
    def last_layer(self) -> Tensor:
        """Weight of the final conv: VQ-GAN's adaptive weight compares gradients here."""
        return self.conv_out.weight
