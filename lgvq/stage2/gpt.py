"""A GPT over code sequences (the VQ-GAN-Transformer setting), with a key/value cache.

Sequence layout: [ condition prefix (C embeddings, optional) | <sos> | c_1 .. c_N ], where
c_1..c_N is the h x w code grid in raster order. Logits at the position of <sos> and of c_i
predict c_1 and c_{i+1}. The prefix is given as embeddings (B, C, width) by the caller (text
features projected, label-map tokens embedded), so one model serves every conditioning.

Sampling runs the prompt once, then one token per step against the cached keys/values of all
earlier positions: O(N) work per token instead of O(N^2) for re-running the whole sequence.
`sample(..., use_cache=False)` re-runs the sequence instead and must give the same tokens
(tests and the benchmark compare the two).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

KVCache = list[tuple[Tensor, Tensor]]


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.dropout = dropout

    def forward(self, x: Tensor, past: tuple[Tensor, Tensor] | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        B, T, D = x.shape
        q, k, v = (t.view(B, T, self.heads, D // self.heads).transpose(1, 2) for t in self.qkv(x).split(D, -1))
        if past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
        S = k.shape[2]
        # Query i (absolute position S - T + i) may see keys 0 .. S - T + i.
        mask = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(S - T)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(B, T, D)), (k, v)


class Block(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width), nn.Dropout(dropout))

    def forward(self, x: Tensor, past: tuple[Tensor, Tensor] | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        a, present = self.attn(self.ln1(x), past)
        x = x + a
        return x + self.mlp(self.ln2(x)), present


class CodeGPT(nn.Module):
    def __init__(self, n_codes: int, n_positions: int, *, width: int, layers: int, heads: int,
                 n_prefix: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        self.n_codes, self.n_positions, self.n_prefix = n_codes, n_positions, n_prefix
        self.sos = n_codes  # one extra input token; never predicted
        self.tok = nn.Embedding(n_codes + 1, width)
        self.pos = nn.Parameter(torch.zeros(1, n_prefix + 1 + n_positions, width))
        self.blocks = nn.ModuleList(Block(width, heads, dropout) for _ in range(layers))
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, n_codes, bias=False)
        self.apply(self._init)
        nn.init.normal_(self.pos, std=0.02)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, past: KVCache | None = None, start: int = 0) -> tuple[Tensor, KVCache]:
        """x: (B, T, width) input embeddings at absolute positions start .. start + T - 1."""
        h = x + self.pos[:, start : start + x.shape[1]]
        present = []
        for i, block in enumerate(self.blocks):
            h, kv = block(h, past[i] if past is not None else None)
            present.append(kv)
        return self.head(self.ln(h)), present

    def _inputs(self, codes: Tensor, prefix: Tensor | None) -> Tensor:
        B = codes.shape[0]
        sos = torch.full((B, 1), self.sos, dtype=torch.long, device=codes.device)
        x = self.tok(torch.cat([sos, codes], 1))
        if self.n_prefix:
            if prefix is None or prefix.shape[1] != self.n_prefix:
                raise ValueError(f"this model needs a condition prefix of {self.n_prefix} embeddings")
            x = torch.cat([prefix, x], 1)
        return x

    def loss(self, codes: Tensor, prefix: Tensor | None = None) -> Tensor:
        """Next-code cross-entropy over the whole grid; codes (B, N) in raster order."""
        logits, _ = self(self._inputs(codes, prefix))
        P = self.n_prefix
        return F.cross_entropy(logits[:, P : P + codes.shape[1]].reshape(-1, self.n_codes), codes.reshape(-1))

    def logits_of(self, codes: Tensor, prefix: Tensor | None = None) -> Tensor:
        """(B, N, n_codes): the logits that predicted each code (for tests of causality)."""
        logits, _ = self(self._inputs(codes, prefix))
        return logits[:, self.n_prefix : self.n_prefix + codes.shape[1]]

    @torch.no_grad()
    def sample(self, n: int, *, prefix: Tensor | None = None, given: Tensor | None = None, temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None,
               use_cache: bool = True, device: torch.device | str = "cpu") -> Tensor:
        """(n, n_positions) codes. `given` (n, t0) fixes the first t0 codes (image completion);
        they are copied into the output unchanged."""
        given = given if given is not None else torch.zeros(n, 0, dtype=torch.long, device=device)
        seq = given.clone()
        sos = torch.full((n, 1), self.sos, dtype=torch.long, device=device)
        x = self.tok(torch.cat([sos, given], 1))
        if self.n_prefix:
            x = torch.cat([prefix, x], 1)
        logits, past = self(x)
        pos = x.shape[1]
        for _ in range(self.n_positions - given.shape[1]):
            nxt = sample_logits(logits[:, -1], temperature, top_k, top_p, generator)
            seq = torch.cat([seq, nxt[:, None]], 1)
            if seq.shape[1] == self.n_positions:
                break
            if use_cache:
                logits, past = self(self.tok(nxt[:, None]), past, start=pos)
            else:
                full = self.tok(torch.cat([sos, seq], 1))
                logits, _ = self(torch.cat([prefix, full], 1) if self.n_prefix else full)
            pos += 1
        return seq


def sample_logits(logits: Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                  generator: torch.Generator | None = None) -> Tensor:
    """One draw per row from softmax(logits / temperature), restricted to the top-k codes and/or
    the smallest set of codes whose probability reaches top_p (nucleus)."""
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, -1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) >= top_p  # keep the first code that crosses top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), -math.inf)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]
