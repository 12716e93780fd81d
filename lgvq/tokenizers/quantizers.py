"""Vector quantisers.

`VectorQuantizer` (VQ-VAE): nearest codebook entry by Euclidean distance, straight-through
gradient to the encoder, and the two VQ terms of PAPER.md's Eq. 2, reported unweighted:
"codebook" = ||sg[z_e] - z_q||^2 (moves codes) and "commit" = ||z_e - sg[z_q]||^2 (moves the
encoder); the model multiplies "commit" by beta (0.25).

`ClusteredVectorQuantizer` (CVQ, Zheng & Vedaldi, ICCV 2023, "Online clustered codebook"):
nearest code by L2 or cosine, plus an exponential moving average of each code's usage; during
training, every code is blended towards an anchor (a batch feature: the closest, or one drawn
by similarity) with a weight that is ~1 for rarely used codes and ~0 for codes in regular use,
so no code stays dead; optionally CVQ's contrastive codebook term.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lgvq.tokenizers.base import QuantizerOutput
from lgvq.train.distributed import all_sum, data_parallel, global_best_rows


def full_precision(t: Tensor) -> contextlib.AbstractContextManager:
    """Autocast off on `t`'s device: code assignment in fp32 even inside a bf16 training step.
    In bf16 (8 bits of mantissa) `flat @ w.t()` flips 0.5-1 % of the nearest codes at the paper's
    sizes, and most of them when the features cluster around a shared mean (the distances then
    differ in bits bf16 does not keep); `encode` assigns in fp32, so training would disagree with it."""
    if t.device.type == "meta":  # shapes only (FLOP counting): there is no autocast to turn off
        return contextlib.nullcontext()
    return torch.autocast(t.device.type, enabled=False)


class VectorQuantizer(nn.Module):
    def __init__(self, n_embed: int, embed_dim: int) -> None:
        super().__init__()
        self.n_embed, self.embed_dim = n_embed, embed_dim
        self.embedding = nn.Embedding(n_embed, embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)

    def weight(self) -> Tensor:
        """(K, D) code vectors. VQCT overrides this with codes computed from word embeddings."""
        return self.embedding.weight

    def nearest(self, flat: Tensor, w: Tensor | None = None) -> Tensor:
        """(N, D) features -> (N,) indices of the closest codes (squared Euclidean, in fp32)."""
        w = self.weight() if w is None else w
        with full_precision(flat):
            flat, w = flat.float(), w.float()
            d = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ w.t() + w.pow(2).sum(1)[None]
        return d.argmin(1)

    def forward(self, z_e: Tensor) -> QuantizerOutput:
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, z_e.shape[1])
        codebook = self.weight()  # once per forward: VQCT computes it through a GCN and an MLP
        return self._quantise(z_e, self.nearest(flat.detach(), codebook), codebook)

    def _quantise(self, z_e: Tensor, idx: Tensor, codebook: Tensor | None = None) -> QuantizerOutput:
        """Codes (N,) -> z_q, the two unweighted VQ terms, straight-through output."""
        b, d, h, w = z_e.shape
        codebook = self.weight() if codebook is None else codebook
        z_q = codebook[idx].view(b, h, w, d).permute(0, 3, 1, 2)
        losses = {"codebook": F.mse_loss(z_q, z_e.detach()), "commit": F.mse_loss(z_e, z_q.detach())}
        z_st = z_e + (z_q - z_e).detach()  # straight-through: forward z_q, gradient to z_e
        return QuantizerOutput(z_st, idx.view(b, h, w), losses, z_e)

    def lookup(self, codes: Tensor) -> Tensor:
        """(B, h, w) codes -> (B, D, h, w) quantised features."""
        return self.weight()[codes].permute(0, 3, 1, 2)


class ClusteredVectorQuantizer(VectorQuantizer):
    """CVQ's online clustered codebook, with the choices that differ between the original
    CVQ-VAE code and the authors' LG_cvq as switches:

    - `distance`: "l2" (squared Euclidean) or "cos" (cosine of the normalised vectors) for both
      the assignment and the anchors.
    - `anchor`: "closest" (each code's most similar batch feature) or "probrandom" (a batch
      feature drawn with probability softmax(similarity) over the batch; global torch RNG, so
      a resumed run draws the same anchors).
    - `contrastive`: CVQ's contrastive term, added to the unweighted losses as "contrastive":
      per code, the mean similarity of its max(1, N // K) most similar features is the positive
      and its N // 2 least similar features are the negatives, cross-entropy at temperature 0.07;
      features detached, so it moves the codebook only.
    The authors' LG_cvq: l2 + probrandom + contrastive. CVQ-VAE's paper setting: cos + closest.
    """

    def __init__(self, n_embed: int, embed_dim: int, decay: float = 0.99, distance: str = "l2",
                 anchor: str = "closest", contrastive: bool = False) -> None:
        super().__init__(n_embed, embed_dim)
        if distance not in ("l2", "cos"):
            raise ValueError(f"cvq_distance must be 'l2' or 'cos', got {distance!r}")
        if anchor not in ("closest", "probrandom"):
            raise ValueError(f"cvq_anchor must be 'closest' or 'probrandom', got {anchor!r}")
        self.decay, self.distance, self.anchor, self.contrastive = decay, distance, anchor, contrastive
        # EMA of each code's share of assignments; starts at 0 so that codes never chosen are
        # pulled to anchors from the first training step.
        self.register_buffer("usage", torch.zeros(n_embed))

    # Data parallel: the usage and the anchors are reduced over every rank's features, so the codebook
    # update is the same computation on every rank and neither travels (lgvq.train.distributed.StateSync).
    dp_replicated = ("usage",)

    def similarity(self, flat: Tensor, w: Tensor) -> Tensor:
        """(N, D) features, (K, D) codes -> (N, K), larger = closer (negative squared L2 or cosine), in fp32."""
        with full_precision(flat):
            flat, w = flat.float(), w.float()
            if self.distance == "cos":
                return F.normalize(flat, dim=1) @ F.normalize(w, dim=1).t()
            return -(flat.pow(2).sum(1, keepdim=True) - 2 * flat @ w.t() + w.pow(2).sum(1)[None])

    def nearest(self, flat: Tensor, w: Tensor | None = None) -> Tensor:
        return self.similarity(flat, self.weight() if w is None else w).argmax(1)

    def forward(self, z_e: Tensor) -> QuantizerOutput:
        # fp32 features: the usage statistics and the anchors the codes move to stay fp32 under autocast
        flat = z_e.detach().permute(0, 2, 3, 1).reshape(-1, self.embed_dim).float()
        # One (N, K) similarity before any update serves the assignment, the contrastive term
        # and the anchors (as in CVQ's code); it carries gradient (to the codebook only) only
        # when the contrastive term uses it.
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.training and self.contrastive):
            sim = self.similarity(flat, self.weight())
        idx = sim.detach().argmax(1)
        out = self._quantise(z_e, idx)
        if self.training:
            with full_precision(flat):
                if self.contrastive:
                    out.losses["contrastive"] = contrastive_loss(sim, self.n_embed)
                self._reinitialise(flat, idx, sim.detach())
        return out

    @torch.no_grad()
    def _reinitialise(self, flat: Tensor, idx: Tensor, sim: Tensor) -> None:
        # A scatter of ones, not bincount: bincount reads the largest index back from the device. The
        # last entry counts the features: summed over ranks, the share is that of the global batch.
        counts = torch.zeros(self.n_embed + 1, device=idx.device)
        counts.index_add_(0, idx, torch.ones(idx.shape, device=idx.device))
        counts[-1] += idx.numel()
        share = all_sum(counts)[:-1] / counts[-1]
        self.usage.mul_(self.decay).add_(share, alpha=1 - self.decay)
        # CVQ's online re-initialisation: every code moves towards its anchor with weight
        # alpha = exp(-usage * K * 10 / (1 - decay) - 1e-3): ~1 for codes nobody uses (they jump
        # onto the data), ~0 for codes in regular use.
        alpha = torch.exp(-(self.usage * self.n_embed * 10) / (1 - self.decay) - 1e-3)[:, None]
        anchors = self._anchors(flat, sim)
        w = self.embedding.weight.data
        # A new tensor, not an in-place copy: the step's graph still holds the old codebook.
        self.embedding.weight.data = w * (1 - alpha) + anchors * alpha

    def _anchors(self, flat: Tensor, sim: Tensor) -> Tensor:
        """(K, D): per code, a feature of the (global) batch — its closest, or one drawn with probability
        softmax(similarity). Data parallel: the maximum over ranks of each rank's sim - log(Exp(1)) is a
        draw from the softmax over the global batch."""
        if self.anchor == "closest":
            pick = sim.argmax(0)
            return global_best_rows(sim.gather(0, pick[None]).squeeze(0), flat[pick])
        # torch.multinomial's own one-sample path (argmax of p / Exp(1)), without its validity check,
        # which reads the probabilities' range back from the device: the same draws, no sync.
        p = F.softmax(sim.t(), dim=1)  # (K, N), contiguous: the noise below fills it in multinomial's order
        noise = torch.empty_like(p).exponential_(1)
        if not data_parallel():
            return flat[(p / noise).argmax(1)]
        best, pick = (sim.t() - noise.log()).max(1)  # log p - log q up to a per-code constant: comparable across ranks
        return global_best_rows(best, flat[pick])


def contrastive_loss(sim: Tensor, n_embed: int, temperature: float = 0.07) -> Tensor:
    """CVQ's codebook contrastive term from the (N, K) feature-code similarities (see above)."""
    ordered = sim.sort(dim=0).values                       # ascending over the N features
    n = ordered.shape[0]
    positive = ordered[-max(1, n // n_embed):].mean(0, keepdim=True)   # (1, K)
    negatives = ordered[: n // 2]                                      # (N // 2, K)
    logits = torch.cat([positive, negatives]).t() / temperature        # (K, 1 + N // 2)
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))
