"""A GPT over code sequences (the VQ-GAN-Transformer setting), with a key/value cache.

Sequence layout: [ condition prefix (C embeddings, optional) | <sos> | c_1 .. c_N ], where
c_1..c_N is the h x w code grid in raster order. Logits at the position of <sos> and of c_i
predict c_1 and c_{i+1}. The prefix is given as embeddings (B, C, width) by the caller (text
features projected, label-map tokens embedded), so one model serves every conditioning.

Attention never materialises a mask: training runs the whole sequence, prefix included, as one
causal sequence (`is_causal=True`, which lets PyTorch pick flash / memory-efficient kernels), and
so does the prompt of a sampling run. Sampling then feeds one token per step against a key/value
cache preallocated for the whole sequence (`StaticKVCache`, no `torch.cat` per token): the new
token may see every cached position, so it needs no mask either. O(N) work per token instead of
O(N^2) for re-running the sequence; `sample(..., use_cache=False)` re-runs the sequence instead
and must give the same tokens (tests and the benchmark compare the two). On CUDA with
`fast=True`, sampling runs under bf16 autocast (the draw itself is made from fp32 logits).
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class StaticKVCache:
    """Keys and values of every layer for `capacity` positions, allocated on the first write (with the
    dtype and device of the keys: bf16 under autocast) and filled in place."""

    def __init__(self, layers: int, capacity: int) -> None:
        self.capacity = capacity
        self.k: list[Tensor | None] = [None] * layers
        self.v: list[Tensor | None] = [None] * layers

    def write(self, layer: int, start: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store k, v (B, H, T, Dh) at positions start .. start + T - 1; return views of positions 0 .. start + T - 1
        (the buffers' first `start + T` positions)."""
        end = start + k.shape[2]
        if end > self.capacity:
            raise ValueError(f"the key/value cache holds {self.capacity} positions; position {end - 1} does not fit")
        if self.k[layer] is None:
            B, H, _, Dh = k.shape
            self.k[layer] = k.new_empty(B, H, self.capacity, Dh)
            self.v[layer] = v.new_empty(B, H, self.capacity, Dh)
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.dropout = dropout

    def forward(self, x: Tensor, cache: StaticKVCache | None = None, layer: int = 0, start: int = 0) -> Tensor:
        B, T, D = x.shape
        q, k, v = (t.view(B, T, self.heads, D // self.heads).transpose(1, 2) for t in self.qkv(x).split(D, -1))
        p = self.dropout if self.training else 0.0
        if cache is not None:
            k_all, v_all = cache.write(layer, start, k, v)
            if start > 0 and T == 1:  # one new token: it sees every position so far, no mask needed
                k, v = k_all, v_all
            elif start > 0:  # several new tokens after cached ones (not used by `sample`): query i sees 0 .. start + i
                mask = torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(start)
                y = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask, dropout_p=p)
                return self.out(y.transpose(1, 2).reshape(B, T, D))
        elif start > 0:
            raise ValueError("a sequence that starts after position 0 needs the cache of the positions before it")
        # From position 0 (training, a sampling prompt): plain causal attention, the prefix part of the sequence.
        y = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1, dropout_p=p)
        return self.out(y.transpose(1, 2).reshape(B, T, D))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width), nn.Dropout(dropout))

    def forward(self, x: Tensor, cache: StaticKVCache | None, layer: int, start: int) -> Tensor:
        x = x + self.attn(self.ln1(x), cache, layer, start)
        return x + self.mlp(self.ln2(x))


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

    def forward(self, x: Tensor, cache: StaticKVCache | None = None, start: int = 0) -> Tensor:
        """Logits for x: (B, T, width) input embeddings at absolute positions start .. start + T - 1;
        their keys/values go into `cache` (needed when start > 0)."""
        h = x + self.pos[:, start : start + x.shape[1]]
        for i, block in enumerate(self.blocks):
            h = block(h, cache, i, start)
        return self.head(self.ln(h))

    def new_cache(self) -> StaticKVCache:
        return StaticKVCache(len(self.blocks), self.pos.shape[1])

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
        logits = self(self._inputs(codes, prefix))
        P = self.n_prefix
        return F.cross_entropy(logits[:, P : P + codes.shape[1]].reshape(-1, self.n_codes), codes.reshape(-1))

    def logits_of(self, codes: Tensor, prefix: Tensor | None = None) -> Tensor:
        """(B, N, n_codes): the logits that predicted each code (for tests of causality)."""
        logits = self(self._inputs(codes, prefix))
        return logits[:, self.n_prefix : self.n_prefix + codes.shape[1]]

    @torch.no_grad()
    def sample(self, n: int, *, prefix: Tensor | None = None, given: Tensor | None = None, temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None,
               use_cache: bool = True, device: torch.device | str = "cpu", fast: bool = False,
               null_prefix: Tensor | None = None, guidance: float = 1.0) -> Tensor:
        """(n, n_positions) codes. `given` (n, t0) fixes the first t0 codes (image completion);
        they are copied into the output unchanged. `fast`: bf16 autocast on CUDA (ignored elsewhere).
        Classifier-free guidance (`guidance` != 1, with the null condition's `null_prefix`): the conditional
        and the null sequences run as one batch of 2n, and each code is drawn from
        null + guidance x (conditional - null) logits; both sequences receive the drawn code."""
        guided = guidance != 1.0
        if guided and (null_prefix is None or prefix is None):
            raise ValueError("guidance needs the condition's prefix and the null condition's (null_prefix)")
        rows = 2 if guided else 1  # guided: the conditional sequences, then the null ones, as one batch
        device = torch.device(device)
        given = given if given is not None else torch.zeros(n, 0, dtype=torch.long, device=device)
        if given.shape[1] >= self.n_positions:
            return given[:, : self.n_positions].clone()
        sos = torch.full((rows * n, 1), self.sos, dtype=torch.long, device=device)
        if self.n_prefix:
            prefix = torch.cat([prefix, null_prefix]) if guided else prefix
        cuda_bf16 = fast and device.type == "cuda"
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda_bf16 else contextlib.nullcontext()
        with amp:
            x = self.tok(torch.cat([sos, given.repeat(rows, 1)], 1))
            if self.n_prefix:
                x = torch.cat([prefix.to(x.dtype), x], 1)
            cache = self.new_cache() if use_cache else None
            logits = self(x, cache)
            # The output is filled in place: no sequence re-allocated per token.
            seq = torch.empty(n, self.n_positions, dtype=torch.long, device=device)
            seq[:, : given.shape[1]] = given
            for t in range(given.shape[1], self.n_positions):
                last = logits[:, -1]
                if guided:
                    cond, null = last.float().chunk(2)
                    last = null + guidance * (cond - null)
                seq[:, t] = sample_logits(last, temperature, top_k, top_p, generator)
                if t + 1 == self.n_positions:
                    break
                if cache is not None:
                    logits = self(self.tok(seq[:, t : t + 1].repeat(rows, 1)), cache,
                                  start=x.shape[1] + t - given.shape[1])
                else:
                    full = self.tok(torch.cat([sos, seq[:, : t + 1].repeat(rows, 1)], 1))
                    logits = self(torch.cat([prefix.to(full.dtype), full], 1) if self.n_prefix else full)
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
