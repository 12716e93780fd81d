"""Text encoder interface.

The language-guided losses need, per caption: per-token features (word features e_w),
a padding mask, which positions are special (start/end: never masked), the token ids
(targets of masked-word prediction), a global sentence feature (e_EOT in the paper), and
the encoder's token-embedding matrix (L_mtp predicts words through it). The encoder is
frozen; features are computed once per dataset and cached (lgvq.text.cache).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class TextFeatures:
    token_ids: Tensor   # (B, L) int64, padded with the tokenizer's pad id
    tokens: Tensor      # (B, L, Dt) float per-token features (last hidden states)
    valid: Tensor       # (B, L) bool, True for real (non-pad) tokens incl. start/end
    special: Tensor     # (B, L) bool, True for start/end tokens (never masked)
    global_: Tensor     # (B, Dt) sentence feature

    def to(self, device: torch.device | str) -> "TextFeatures":
        return TextFeatures(*(t.to(device) for t in (self.token_ids, self.tokens, self.valid, self.special, self.global_)))

    def __getitem__(self, idx) -> "TextFeatures":
        return TextFeatures(self.token_ids[idx], self.tokens[idx], self.valid[idx], self.special[idx], self.global_[idx])


class TextEncoder:
    """Frozen text encoder. Built in: `minilm` (offline default) and `clip` (the paper's); others by name or
    import path (lgvq.text.registry), constructed as `cls(path, max_length=..., device=...)`."""

    name: str          # registry name recorded in manifests, e.g. "minilm"
    model_id: str      # what was actually loaded (path or hub id)
    width: int         # Dt
    max_length: int    # captions are truncated to this many tokens (paper: 30)
    vocab_size: int
    pad_id: int

    def encode(self, captions: list[str]) -> TextFeatures:  # pragma: no cover - interface
        raise NotImplementedError

    mask_id: int       # token standing for a masked word when a caption is re-encoded

    def encode_ids(self, token_ids: Tensor, valid: Tensor) -> Tensor:  # pragma: no cover - interface
        """Per-token features (B, L, Dt), float32 on the encoder's device, of already tokenised captions
        (the leak-free protocol of masked-word recall, and `lg.mtp_input: leak_free` training, re-encode
        captions whose masked words became `mask_id`)."""
        raise NotImplementedError

    def token_embedding_matrix(self) -> Tensor:  # pragma: no cover - interface
        """(vocab_size, Dt) input token embeddings, detached."""
        raise NotImplementedError

    def tokenize_words(self, words: list[str]) -> list[list[int]]:  # pragma: no cover - interface
        """Token ids of single words without special tokens (for masked-word evaluation)."""
        raise NotImplementedError

    def decode_ids(self, ids: list[int]) -> str:  # pragma: no cover - interface
        raise NotImplementedError
