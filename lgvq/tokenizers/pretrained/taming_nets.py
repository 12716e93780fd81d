"""The taming-transformers encoder/decoder with taming's own parameter names and arithmetic.

`lgvq.tokenizers.nets` is taming-*style* but not checkpoint-compatible: it merges q/k/v into
one conv, pads the stride-2 convs symmetrically and flattens the levels into one Sequential.
A published checkpoint only loads into the layout it was saved from, so this module keeps
taming's module tree (`down.{i}.block.{j}`, `down.{i}.attn.{j}`, `mid.block_1`, `up.{i}`...)
and its asymmetric (0, 1, 0, 1) padding before each stride-2 conv. LlamaGen's VQ-16 is the
same network under other names; `llamagen_vq` maps its keys onto this tree.

Attention sits at a set of *levels* (level i works at 1/2**i of the input). taming derives
the set from `attn_resolutions` and its training resolution; LlamaGen puts it at the last
level. Deriving it from the level, not from the size of the image seen at run time, keeps
the architecture fixed when a checkpoint is run at another image size.
"""

from __future__ import annotations

from typing import Collection, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from lgvq.tokenizers.nets import Upsample  # the same layer as taming's: nearest x2, then a 3x3 conv


def group_norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, ch, eps=1e-6, affine=True)  # taming's Normalize: always 32 groups


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1, self.conv1 = group_norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = group_norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class AttnBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.norm = group_norm(ch)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(ch, ch, 1) for _ in range(4))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        n = self.norm(x)
        q, k, v = (f(n).reshape(b, c, h * w).transpose(1, 2) for f in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(c)) v, as taming's bmm
        return x + self.proj_out(out.transpose(1, 2).reshape(b, c, h, w))


class Downsample(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class _Middle(nn.Module):
    def __init__(self, ch: int, dropout: float) -> None:
        super().__init__()
        self.block_1, self.attn_1, self.block_2 = ResnetBlock(ch, ch, dropout), AttnBlock(ch), ResnetBlock(ch, ch, dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


def _level(blocks: list[nn.Module], attn: list[nn.Module]) -> nn.Module:
    level = nn.Module()
    level.block, level.attn = nn.ModuleList(blocks), nn.ModuleList(attn)
    return level


def _run_level(level: nn.Module, h: Tensor) -> Tensor:
    for i, block in enumerate(level.block):
        h = block(h)
        if len(level.attn):
            h = level.attn[i](h)
    return h


class TamingEncoder(nn.Module):
    def __init__(self, *, ch: int, ch_mult: Sequence[int], num_res_blocks: int, attn_levels: Collection[int],
                 z_channels: int, in_channels: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        cin = ch
        for i, mult in enumerate(ch_mult):
            blocks, attn = [], []
            for _ in range(num_res_blocks):
                blocks.append(ResnetBlock(cin, ch * mult, dropout))
                cin = ch * mult
                if i in attn_levels:
                    attn.append(AttnBlock(cin))
            level = _level(blocks, attn)
            if i != len(ch_mult) - 1:
                level.downsample = Downsample(cin)
            self.down.append(level)
        self.mid = _Middle(cin, dropout)
        self.norm_out = group_norm(cin)
        self.conv_out = nn.Conv2d(cin, z_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = _run_level(level, h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class TamingDecoder(nn.Module):
    def __init__(self, *, ch: int, ch_mult: Sequence[int], num_res_blocks: int, attn_levels: Collection[int],
                 z_channels: int, out_channels: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        cin = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, cin, 3, padding=1)
        self.mid = _Middle(cin, dropout)
        levels: list[nn.Module] = []
        for i in reversed(range(len(ch_mult))):  # built coarse to fine, indexed by level as in taming
            blocks, attn = [], []
            for _ in range(num_res_blocks + 1):
                blocks.append(ResnetBlock(cin, ch * ch_mult[i], dropout))
                cin = ch * ch_mult[i]
                if i in attn_levels:
                    attn.append(AttnBlock(cin))
            level = _level(blocks, attn)
            if i != 0:
                level.upsample = Upsample(cin)
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(cin)
        self.conv_out = nn.Conv2d(cin, out_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = _run_level(level, h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))

    @property
    def last_layer(self) -> Tensor:
        return self.conv_out.weight
