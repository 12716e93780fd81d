"""The two transformers of the language-guided module, built as in the authors' code.

`VisualTokenTransformer` (f_vt, the authors' `quantTransformer`): CLIP's vision transformer
without the patch convolution. It runs at the code width D on [CLS] + the h*w quantised
vectors: learned [CLS] and positional embeddings (std 0.01), ln_pre, pre-LN residual blocks
(multi-head attention; MLP 4D with QuickGELU; no dropout), ln_post on every token, then a
linear projection D -> Dt (std 0.01). Output: Z_vt (B, 1 + h*w, Dt).

`MaskedTextDecoder` (the authors' `Decoder`): post-LN layers at the text width Dt, each
self-attention over the caption (padding masked) -> dropout -> add & LayerNorm, cross-attention
to Z_vt -> dropout -> add & LayerNorm, FFN (Dt -> ffn -> Dt, ReLU, dropout) -> dropout ->
add & LayerNorm (eps 1e-12). No positional embedding: at a masked slot the only position signal
is the per-position [mask] vector (held by `LanguageGuidance`).

Parameter counts at the paper's sizes (D 256, Dt 512, 16x16 codes, 2 layers, 1 head, FFN 512):
f_vt 1,777,664 and the decoder 5,259,264, the authors' numbers (tests/test_method_fidelity.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class QuickGELU(nn.Module):
    """CLIP's activation: x * sigmoid(1.702 x)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class Attention(nn.Module):
    """Multi-head attention with separate q/k/v/output projections (4 x (d^2 + d) parameters,
    the authors' layout) over scaled_dot_product_attention. `key_valid` (B, Lk) bool masks keys."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        if d % heads:
            raise ValueError(f"attention width {d} is not divisible by {heads} heads")
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x: Tensor, context: Tensor | None = None, key_valid: Tensor | None = None) -> Tensor:
        context = x if context is None else context
        b, lq, d = x.shape

        def split(t: Tensor) -> Tensor:
            return t.view(b, t.shape[1], self.heads, d // self.heads).transpose(1, 2)

        mask = None if key_valid is None else key_valid[:, None, None, :]
        y = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(context)), split(self.v(context)),
                                           attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(b, lq, d))


class ResidualBlock(nn.Module):
    """CLIP's pre-LN block: x + attn(ln_1 x); x + mlp(ln_2 x), MLP 4d with QuickGELU, no dropout."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.ln_1, self.attn, self.ln_2 = nn.LayerNorm(d), Attention(d, heads), nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), QuickGELU(), nn.Linear(4 * d, d))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class VisualTokenTransformer(nn.Module):
    def __init__(self, code_dim: int, text_width: int, grid_tokens: int, layers: int, heads: int) -> None:
        super().__init__()
        self.cls = nn.Parameter(torch.randn(code_dim) * 0.01)
        self.pos = nn.Parameter(torch.randn(grid_tokens + 1, code_dim) * 0.01)
        self.ln_pre, self.ln_post = nn.LayerNorm(code_dim), nn.LayerNorm(code_dim)
        self.blocks = nn.ModuleList(ResidualBlock(code_dim, heads) for _ in range(layers))
        self.proj = nn.Parameter(torch.randn(code_dim, text_width) * 0.01)
        # CLIP's initialisation: residual projections scaled by depth.
        attn_std, fc_std = code_dim ** -0.5, (2 * code_dim) ** -0.5
        proj_std = attn_std * (2 * layers) ** -0.5
        for blk in self.blocks:
            for lin in (blk.attn.q, blk.attn.k, blk.attn.v):
                nn.init.normal_(lin.weight, std=attn_std)
            nn.init.normal_(blk.attn.out.weight, std=proj_std)
            nn.init.normal_(blk.mlp[0].weight, std=fc_std)
            nn.init.normal_(blk.mlp[2].weight, std=proj_std)

    def forward(self, z_q: Tensor) -> Tensor:
        """(B, D, h, w) -> Z_vt (B, 1 + h*w, Dt); index 0 is [CLS]."""
        x = z_q.flatten(2).transpose(1, 2)
        if x.shape[1] + 1 != len(self.pos):
            raise ValueError(f"the LG module was built for {len(self.pos) - 1} codes per image, got {x.shape[1]}")
        x = torch.cat([self.cls.expand(len(x), 1, -1).to(x.dtype), x], 1) + self.pos.to(x.dtype)
        x = self.ln_pre(x)
        for blk in self.blocks:
            x = blk(x)
        return self.ln_post(x) @ self.proj


class DecoderLayer(nn.Module):
    def __init__(self, d: int, ffn: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.self_attn, self.cross_attn = Attention(d, heads), Attention(d, heads)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d, eps=1e-12) for _ in range(3))
        self.ffn = nn.Sequential(nn.Linear(d, ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn, d))
        self.drop = nn.Dropout(dropout)
        for attn in (self.self_attn, self.cross_attn):
            for lin in (attn.q, attn.k, attn.v, attn.out):
                nn.init.normal_(lin.weight, std=d ** -0.5)
        nn.init.normal_(self.ffn[0].weight, std=ffn ** -0.5)
        nn.init.normal_(self.ffn[3].weight, std=d ** -0.5)

    def forward(self, x: Tensor, memory: Tensor, valid: Tensor) -> Tensor:
        x = self.norm1(x + self.drop(self.self_attn(x, key_valid=valid)))
        x = self.norm2(x + self.drop(self.cross_attn(x, memory)))
        return self.norm3(x + self.drop(self.ffn(x)))


class MaskedTextDecoder(nn.Module):
    def __init__(self, d: int, ffn: int, layers: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(d, ffn, heads, dropout) for _ in range(layers))

    def forward(self, words: Tensor, memory: Tensor, valid: Tensor) -> Tensor:
        """words (B, L, Dt) with masked slots already replaced; memory Z_vt (B, N, Dt); valid (B, L)."""
        for layer in self.layers:
            words = layer(words, memory, valid)
        return words
