"""The three language-guided losses as pure functions of tensors (PAPER.md, authors' code).

Shapes: B batch, L text length (30), N visual tokens, Dt text width, V vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def gsa_loss(cls_token: Tensor, text_global: Tensor) -> Tensor:
    """L_gsa: InfoNCE between image [CLS] (B, Dt) and caption global features (B, Dt).

    Both L2-normalised, text side detached, no temperature (the authors' code):
    loss_i = -log(exp(cos_ii) / (sum_j exp(cos_ij) + 1e-6)), mean over the batch.
    """
    v = F.normalize(cls_token, dim=-1)
    t = F.normalize(text_global.detach(), dim=-1)
    sim = (v @ t.t()).float()  # the softmax-like ratio in fp32 under bf16 autocast (a no-op in fp32)
    return -(sim.diagonal().exp() / (sim.exp().sum(1) + 1e-6)).log().mean()


def sample_mask(valid: Tensor, special: Tensor, generator: torch.Generator | None = None,
                mean: float = 0.5, std: float = 0.1, lo: float = 0.1, hi: float = 0.3) -> Tensor:
    """(B, L) bool mask for L_mtp: one ratio per batch from N(mean, std) truncated to [lo, hi]
    (by rejection; as in the authors' code most draws land near `hi`), then every real,
    non-special token is masked independently with that probability."""
    return sample_mask_and_bound(valid, special, generator, mean, std, lo, hi)[0]


def sample_mask_and_bound(valid: Tensor, special: Tensor, generator: torch.Generator | None = None,
                          mean: float = 0.5, std: float = 0.1, lo: float = 0.1, hi: float = 0.3) -> tuple[Tensor, int]:
    """`sample_mask`, and a host-side upper bound on the number of masked positions.

    The draws come from the CPU generator (on every device, so a run's masks do not depend on it);
    the bound counts the host draws below the ratio before the device's valid/special masks remove
    some, so the caller can gather a fixed number of positions without reading the mask back."""
    from lgvq.train.syncs import host_side

    with host_side():  # host tensors on every device: no device synchronisation
        while True:
            r = float(torch.randn((), generator=generator) * std + mean)
            if lo <= r <= hi:
                break
        drawn = torch.rand(valid.shape, generator=generator) < r
        bound = int(drawn.sum())
    return drawn.to(valid.device, non_blocking=True) & valid & ~special, bound


def mtp_loss(logits: Tensor, targets: Tensor, masked: Tensor, valid: Tensor, label_smoothing: float = 0.1) -> Tensor:
    """L_mtp: label-smoothed CE over masked, non-pad positions. logits (B, L, V), targets (B, L).
    Zero (not NaN) when nothing is masked. A weighted mean over every position, not a boolean
    selection: no host-device synchronisation (the selection's size would be data-dependent)."""
    sel = (masked & valid).flatten().to(logits.dtype)
    ce = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), label_smoothing=label_smoothing, reduction="none")
    return (ce * sel).sum() / sel.sum().clamp(min=1.0)


def ras_loss(vision_tokens: Tensor, projected_codes: Tensor, words: Tensor, valid: Tensor) -> Tensor:
    """L_ras: word-word relations (Q) vs the relations of the codes aligned to those words (P).

    vision_tokens (B, N, Dt) — visual tokens without [CLS]; projected_codes (B, N, Dt) — the
    quantised features at the same grid positions, projected to the text width; words
    (B, L, Dt); valid (B, L). Each word picks the visual token of maximal cosine; the projected
    code there, scaled by that cosine and L2-normalised (pads zeroed), gives P = code-code
    cosines; Q = word-word cosines (pads zeroed, detached); MSE over all B x L x L entries.
    """
    w = F.normalize(words, dim=-1) * valid[..., None]
    v = F.normalize(vision_tokens, dim=-1)
    sim = w @ v.transpose(1, 2)                      # (B, L, N)
    best, pos = sim.max(dim=-1)                      # (B, L)
    codes = torch.gather(projected_codes, 1, pos[..., None].expand(-1, -1, projected_codes.shape[-1]))
    codes = F.normalize(codes * best[..., None], dim=-1) * valid[..., None]
    p = codes @ codes.transpose(1, 2)
    q = (w @ w.transpose(1, 2)).detach()
    return F.mse_loss(p, q)
