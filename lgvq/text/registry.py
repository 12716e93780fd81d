"""Text encoder by name: `minilm` (offline default) or `clip` (the paper's, local path)."""

from __future__ import annotations

from lgvq.config import ConfigError
from lgvq.text.base import TextEncoder


def get_text_encoder(name: str, *, path: str | None = None, max_length: int = 30, device: str = "cpu") -> TextEncoder:
    from lgvq.text.hf import CLIPTextEncoder, MiniLMEncoder

    if name == "minilm":
        return MiniLMEncoder(path, max_length=max_length, device=device)
    if name == "clip":
        return CLIPTextEncoder(path, max_length=max_length, device=device)
    raise ConfigError(f"text_encoder.name: unknown text encoder '{name}' (known: minilm, clip)")
