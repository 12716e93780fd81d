"""The language-guided module, attached to any tokenizer's quantised grid z_q (B, D, h, w).

f_vt: a small transformer over the grid tokens plus a learnable [CLS], projected to the text
width (the visual tokens Z_vt). Masked-text decoder: word features with masked positions
replaced by one learnable vector, self-attention (padding masked), cross-attention to Z_vt,
and an MLM head (Linear-GELU-LayerNorm) whose output is multiplied by the frozen token
embedding matrix. L_ras projects z_q to the text width with Linear-GELU-LayerNorm. A zero
weight removes its term and its compute; only tokenizer and LG parameters train.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lgvq.lg.losses import gsa_loss, mtp_loss, ras_loss, sample_mask
from lgvq.text.base import TextFeatures


class LanguageGuidance(nn.Module):
    def __init__(self, *, code_dim: int, text_width: int, token_embeddings: Tensor, gsa: float, mtp: float,
                 ras: float, layers: int = 2, heads: int = 1, dropout: float = 0.1, max_len: int = 30,
                 max_tokens: int = 1024, width: int | None = None) -> None:
        super().__init__()
        self.weights = {"gsa": gsa, "mtp": mtp, "ras": ras}
        # Transformers run at `width` (default: the text width, as in the paper); inputs and
        # outputs live in the text space. A smaller width keeps CPU-sized runs affordable.
        d = width or text_width
        self.in_proj = nn.Linear(code_dim, d)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.randn(1, max_tokens + 1, d) * 0.02)
        layer = lambda: nn.TransformerEncoderLayer(d, heads, 4 * d, dropout, batch_first=True, norm_first=True)  # noqa: E731
        self.f_vt = nn.TransformerEncoder(layer(), layers, enable_nested_tensor=False)
        self.vt_out = nn.Linear(d, text_width)
        self.vt_in = nn.Linear(text_width, d) if d != text_width else nn.Identity()
        # masked text prediction
        self.mask_vector = nn.Parameter(torch.randn(1, 1, text_width) * 0.01)
        self.text_in = nn.Linear(text_width, d) if d != text_width else nn.Identity()
        self.text_pos = nn.Parameter(torch.randn(1, max_len, d) * 0.02)
        self.decoder = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(d, heads, 4 * d, dropout, batch_first=True, norm_first=True), layers)
        self.mlm_head = nn.Sequential(nn.Linear(d, text_width), nn.GELU(), nn.LayerNorm(text_width))
        self.mlm_bias = nn.Parameter(torch.zeros(token_embeddings.shape[0]))
        self.register_buffer("token_embeddings", token_embeddings.float().detach(), persistent=False)
        # relation alignment
        self.ras_proj = nn.Sequential(nn.Linear(code_dim, text_width), nn.GELU(), nn.LayerNorm(text_width))
        nn.init.normal_(self.ras_proj[0].weight, std=0.01)

    def visual_tokens(self, z_q: Tensor) -> Tensor:
        """(B, D, h, w) -> Z_vt (B, 1 + h*w, Dt), index 0 is [CLS]."""
        x = self.in_proj(z_q.flatten(2).transpose(1, 2))
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], 1) + self.pos[:, : x.shape[1] + 1]
        return self.vt_out(self.f_vt(x))

    def cls_embedding(self, z_q: Tensor) -> Tensor:
        return self.visual_tokens(z_q)[:, 0]

    def _decode(self, text: TextFeatures, masked: Tensor, z_vt: Tensor) -> Tensor:
        """Masked caption -> MLM head features (B, L, Dt), before the vocabulary projection."""
        words = torch.where(masked[..., None], self.mask_vector.expand_as(text.tokens), text.tokens)
        words = words * text.valid[..., None]
        L = words.shape[1]
        h = self.decoder(self.text_in(words) + self.text_pos[:, :L], self.vt_in(z_vt), tgt_key_padding_mask=~text.valid)
        return self.mlm_head(h)

    def logits(self, h: Tensor) -> Tensor:
        return h @ self.token_embeddings.t() + self.mlm_bias

    def predict_masked(self, z_q: Tensor, text: TextFeatures, masked: Tensor, z_vt: Tensor | None = None) -> Tensor:
        """(B, L, V) logits over the vocabulary for every position of the masked caption."""
        z_vt = self.visual_tokens(z_q) if z_vt is None else z_vt
        return self.logits(self._decode(text, masked, z_vt))

    def forward(self, z_q: Tensor, text: TextFeatures, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        terms: dict[str, Tensor] = {}
        if not any(w > 0 for w in self.weights.values()):
            return terms
        z_vt = self.visual_tokens(z_q)
        if self.weights["gsa"] > 0:
            terms["gsa"] = self.weights["gsa"] * gsa_loss(z_vt[:, 0], text.global_)
        if self.weights["mtp"] > 0:
            masked = sample_mask(text.valid, text.special, generator)
            h = self._decode(text, masked, z_vt)
            # Only masked, real positions enter the loss: project just those onto the vocabulary
            # (the (B, L, V) logits would dominate the step's cost for a 30k vocabulary).
            sel = masked & text.valid
            logits = self.logits(h[sel])[None]
            ones = torch.ones(logits.shape[:2], dtype=torch.bool, device=logits.device)
            terms["mtp"] = self.weights["mtp"] * mtp_loss(logits, text.token_ids[sel][None], ones, ones)
        if self.weights["ras"] > 0:
            codes = self.ras_proj(z_q.flatten(2).transpose(1, 2))
            terms["ras"] = self.weights["ras"] * ras_loss(z_vt[:, 1:], codes, text.tokens, text.valid)
        return terms
