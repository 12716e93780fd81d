"""The language-guided module, attached to any tokenizer's quantised grid z_q (B, D, h, w).

f_vt: a CLIP-style transformer over [CLS] + the grid's code vectors at the code width,
projected to the text width (the visual tokens Z_vt). Masked-text decoder: word features with
masked positions replaced by a learned per-position [mask] vector, post-LN self-attention
(padding masked), cross-attention to Z_vt, and an MLM head (Linear-GELU-LayerNorm) whose output
is multiplied by the frozen token embedding matrix. Both as in the authors' code (lgvq.lg.nets).
L_ras projects z_q to the text width with Linear-GELU-LayerNorm. A zero weight removes its
term and its compute; only tokenizer and LG parameters train.

The decoder's training input is the paper's by default: the cached features of the whole caption
with the masked slots overwritten. Given a `reencode` (`lg.mtp_input: leak_free`), it is the caption
re-encoded with the masked words replaced by the encoder's mask token (`reencode_masked`), the input
the leak-free Recall@1 protocol scores (lgvq.lg.evaluate).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from lgvq.lg.losses import gsa_loss, mtp_loss, ras_loss, sample_mask_and_bound
from lgvq.lg.nets import MaskedTextDecoder, VisualTokenTransformer
from lgvq.text.base import TextFeatures


def reencode_masked(text: TextFeatures, masked: Tensor, encoder) -> TextFeatures:
    """The leak-free input: the caption with its masked words replaced by the encoder's mask
    token BEFORE encoding, so no later position has seen the word (CLIP's text tower is causal,
    MiniLM's bidirectional: with the paper's protocol both leak it). Targets stay the original ids;
    the global feature stays the whole caption's (L_gsa and L_ras read the unmasked caption)."""
    ids = torch.where(masked, torch.full_like(text.token_ids, encoder.mask_id), text.token_ids)
    with torch.no_grad(), torch.autocast(text.tokens.device.type, enabled=False):  # the frozen encoder, outside autocast
        tokens = encoder.encode_ids(ids, text.valid)
    return TextFeatures(text.token_ids, tokens.to(text.tokens.device, text.tokens.dtype), text.valid, text.special,
                        text.global_)


Reencode = Callable[[TextFeatures, Tensor], TextFeatures]  # (caption, masked positions) -> the decoder's input


class LanguageGuidance(nn.Module):
    def __init__(self, *, code_dim: int, text_width: int, grid_tokens: int, token_embeddings: Tensor, gsa: float,
                 mtp: float, ras: float, layers: int = 2, heads: int = 1, dropout: float = 0.1,
                 max_len: int = 30) -> None:
        super().__init__()
        self.weights = {"gsa": gsa, "mtp": mtp, "ras": ras}
        # f_vt at the code width, projected to the text width (the authors' quantTransformer).
        self.f_vt = VisualTokenTransformer(code_dim, text_width, grid_tokens, layers, heads)
        # Masked text prediction: one learned [mask] vector per position (the only position
        # signal at a masked slot), a post-LN decoder at the text width with FFN = text width.
        self.mask_tokens = nn.Parameter(torch.randn(1, max_len, text_width) * 0.01)
        self.decoder = MaskedTextDecoder(text_width, text_width, layers, heads, dropout)
        self.mlm_head = nn.Sequential(nn.Linear(text_width, text_width), nn.GELU(), nn.LayerNorm(text_width))
        self.mlm_bias = nn.Parameter(torch.zeros(token_embeddings.shape[0]))
        self.register_buffer("token_embeddings", token_embeddings.float().detach(), persistent=False)
        # relation alignment
        self.ras_proj = nn.Sequential(nn.Linear(code_dim, text_width), nn.GELU(), nn.LayerNorm(text_width))
        nn.init.normal_(self.ras_proj[0].weight, std=0.01)

    def visual_tokens(self, z_q: Tensor) -> Tensor:
        """(B, D, h, w) -> Z_vt (B, 1 + h*w, Dt), index 0 is [CLS]."""
        return self.f_vt(z_q)

    def cls_embedding(self, z_q: Tensor) -> Tensor:
        return self.visual_tokens(z_q)[:, 0]

    def _decode(self, text: TextFeatures, masked: Tensor, z_vt: Tensor) -> Tensor:
        """Masked caption -> MLM head features (B, L, Dt), before the vocabulary projection."""
        L = text.tokens.shape[1]
        words = torch.where(masked[..., None], self.mask_tokens[:, :L].to(text.tokens.dtype), text.tokens)
        words = words * text.valid[..., None]
        return self.mlm_head(self.decoder(words, z_vt, text.valid))

    def logits(self, h: Tensor) -> Tensor:
        return h @ self.token_embeddings.t() + self.mlm_bias

    def predict_masked(self, z_q: Tensor, text: TextFeatures, masked: Tensor, z_vt: Tensor | None = None) -> Tensor:
        """(B, L, V) logits over the vocabulary for every position of the masked caption."""
        z_vt = self.visual_tokens(z_q) if z_vt is None else z_vt
        return self.logits(self._decode(text, masked, z_vt))

    def masked_top1(self, z_q: Tensor, text: TextFeatures, masked: Tensor, chunk: int = 256) -> Tensor:
        """Top-1 token id at every masked position (row-major order, as `logits[masked]`), without the
        (B, L, V) logits: only masked positions are projected onto the vocabulary, `chunk` at a time,
        so evaluation holds chunk x V floats (~31 MB for BERT's vocabulary) whatever the batch."""
        rows = self._decode(text, masked, self.visual_tokens(z_q))[masked]
        if len(rows) == 0:
            return torch.zeros(0, dtype=torch.long)
        return torch.cat([self.logits(rows[i : i + chunk]).argmax(-1) for i in range(0, len(rows), chunk)])

    def forward(self, z_q: Tensor, text: TextFeatures, generator: torch.Generator | None = None,
                reencode: Reencode | None = None) -> dict[str, Tensor]:
        """The weighted LG terms. `reencode`: the masked-text decoder's input is built from the masked
        caption by it (leak-free) instead of from `text`'s cached features (the paper's)."""
        terms: dict[str, Tensor] = {}
        if not any(w > 0 for w in self.weights.values()):
            return terms
        z_vt = self.visual_tokens(z_q)
        if self.weights["gsa"] > 0:
            terms["gsa"] = self.weights["gsa"] * gsa_loss(z_vt[:, 0], text.global_)
        if self.weights["mtp"] > 0:
            masked, bound = sample_mask_and_bound(text.valid, text.special, generator)
            h = self._decode(text if reencode is None else reencode(text, masked), masked, z_vt)
            # Only masked, real positions enter the loss: project just those onto the vocabulary
            # (the (B, L, V) logits would dominate the step's cost for a 30k vocabulary). A boolean
            # selection would read its size back from the device; `bound` (known on the host) fixes it,
            # the positions past the real ones point at a zero row of weight 0.
            sel = (masked & text.valid).flatten()
            pick = torch.nonzero_static(sel, size=bound, fill_value=sel.numel()).squeeze(1)
            rows = torch.cat([h.flatten(0, 1), h.new_zeros(1, h.shape[-1])])[pick]
            ids = torch.cat([text.token_ids.flatten(), text.token_ids.new_zeros(1)])[pick]
            real = torch.cat([sel, sel.new_zeros(1)])[pick]
            ones = torch.ones_like(real)
            terms["mtp"] = self.weights["mtp"] * mtp_loss(self.logits(rows)[None], ids[None], real[None], ones[None])
        if self.weights["ras"] > 0:
            codes = self.ras_proj(z_q.flatten(2).transpose(1, 2))
            terms["ras"] = self.weights["ras"] * ras_loss(z_vt[:, 1:], codes, text.tokens, text.valid)
        return terms
