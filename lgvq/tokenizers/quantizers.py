"""Vector quantisers.

`VectorQuantizer` (VQ-VAE): nearest codebook entry by Euclidean distance, straight-through
gradient to the encoder, and the two VQ terms of PAPER.md's Eq. 2, reported unweighted:
"codebook" = ||sg[z_e] - z_q||^2 (moves codes) and "commit" = ||z_e - sg[z_q]||^2 (moves the
encoder); the model multiplies "commit" by beta (0.25).

`ClusteredVectorQuantizer` (CVQ, Zheng & Vedaldi, ICCV 2023, "Online clustered codebook"):
same assignment, plus an exponential moving average of each code's usage; during training,
every code is blended towards an anchor (its closest encoder feature in the batch) with a
weight that is ~1 for rarely used codes and ~0 for codes in regular use, so no code stays
dead (CVQ's "closest" anchor sampling). CVQ's contrastive loss is not used (the CVQ paper
reports it as optional).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lgvq.tokenizers.base import QuantizerOutput


class VectorQuantizer(nn.Module):
    def __init__(self, n_embed: int, embed_dim: int) -> None:
        super().__init__()
        self.n_embed, self.embed_dim = n_embed, embed_dim
        self.embedding = nn.Embedding(n_embed, embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)

    def weight(self) -> Tensor:
        """(K, D) code vectors. VQCT overrides this with codes computed from word embeddings."""
        return self.embedding.weight

    def nearest(self, flat: Tensor) -> Tensor:
        """(N, D) features -> (N,) indices of the closest codes (squared Euclidean)."""
        w = self.weight()
        d = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ w.t() + w.pow(2).sum(1)[None]
        return d.argmin(1)

    def forward(self, z_e: Tensor) -> QuantizerOutput:
        b, d, h, w = z_e.shape
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, d)
        idx = self.nearest(flat.detach())
        z_q = self.weight()[idx].view(b, h, w, d).permute(0, 3, 1, 2)
        losses = {"codebook": F.mse_loss(z_q, z_e.detach()), "commit": F.mse_loss(z_e, z_q.detach())}
        self._after_assignment(flat.detach(), idx)
        z_st = z_e + (z_q - z_e).detach()  # straight-through: forward z_q, gradient to z_e
        return QuantizerOutput(z_st, idx.view(b, h, w), losses, z_e)

    def _after_assignment(self, flat: Tensor, idx: Tensor) -> None:
        """Hook for codebook maintenance (CVQ)."""

    def lookup(self, codes: Tensor) -> Tensor:
        """(B, h, w) codes -> (B, D, h, w) quantised features."""
        return self.weight()[codes].permute(0, 3, 1, 2)


class ClusteredVectorQuantizer(VectorQuantizer):
    def __init__(self, n_embed: int, embed_dim: int, decay: float = 0.99) -> None:
        super().__init__(n_embed, embed_dim)
        self.decay = decay
        # EMA of each code's share of assignments; starts at 0 so that codes never chosen are
        # pulled to anchors from the first training step.
        self.register_buffer("usage", torch.zeros(n_embed))

    def nongrad_tensors(self) -> tuple[torch.Tensor, ...]:
        """Updated outside autograd (dead-code re-initialisation): data-parallel training
        broadcasts it from rank 0 so replicas stay identical (lgvq.train.distributed)."""
        return (self.embedding.weight.data,)

    @torch.no_grad()
    def _after_assignment(self, flat: Tensor, idx: Tensor) -> None:
        if not self.training:
            return
        share = torch.bincount(idx, minlength=self.n_embed).float() / idx.numel()
        self.usage.mul_(self.decay).add_(share, alpha=1 - self.decay)
        # CVQ's online re-initialisation: every code moves towards its anchor (the closest
        # encoder feature of the batch) with weight alpha = exp(-usage * K * 10 / (1 - decay) - 1e-3):
        # ~1 for codes nobody uses (they jump onto the data), ~0 for codes in regular use.
        alpha = torch.exp(-(self.usage * self.n_embed * 10) / (1 - self.decay) - 1e-3)[:, None]
        w = self.embedding.weight.data
        d = w.pow(2).sum(1, keepdim=True) - 2 * w @ flat.t() + flat.pow(2).sum(1)[None]  # (K, N)
        anchors = flat[d.argmin(1)]
        self.embedding.weight.data = w * (1 - alpha) + anchors * alpha
