"""Tokenizers by registry name: the config says `class: vqgan` and `params: {...}`."""

from __future__ import annotations

import inspect
from typing import Callable

import torch

from lgvq.config import ConfigError
from lgvq.tokenizers.base import Tokenizer

_REGISTRY: dict[str, type[Tokenizer]] = {}
_BUILTINS_LOADED = False


def register_tokenizer(name: str):
    def deco(cls: type[Tokenizer]) -> type[Tokenizer]:
        _REGISTRY[name] = cls
        return cls

    return deco


def list_tokenizers() -> list[str]:
    _ensure_builtin()
    return sorted(_REGISTRY)


def _accepted(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" in klass.__dict__:
            names |= {p for p in inspect.signature(klass.__init__).parameters if p not in ("self", "params", "vq_params")}
    return names


def build_tokenizer(name: str, params: dict, *, image_size: int,
                    word_embeddings: Callable[[], torch.Tensor] | None = None, key: str = "tokenizers.*") -> Tokenizer:
    """`key` is the config entry the name and params came from (e.g. "tokenizers.vqgan"), so an
    error names the exact key to fix."""
    _ensure_builtin()
    if name not in _REGISTRY:
        raise ConfigError(f"{key}.class: unknown tokenizer '{name}' (registered: {', '.join(sorted(_REGISTRY))})")
    cls = _REGISTRY[name]
    unknown = set(params) - _accepted(cls)
    if unknown:
        raise ConfigError(f"{key}.params: unknown parameter(s) {sorted(unknown)} for '{name}'")
    kwargs = dict(params, image_size=image_size)
    if "word_embeddings" in _accepted(cls):
        if word_embeddings is None:
            raise ConfigError(f"tokenizer '{name}' needs word embeddings (a text cache) to build its codebook")
        kwargs["word_embeddings"] = word_embeddings
    return cls(**kwargs)


def _ensure_builtin() -> None:
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    import importlib

    from lgvq.tokenizers import BUILTIN

    for name, target in BUILTIN.items():
        module, cls = target.split(":")
        _REGISTRY.setdefault(name, getattr(importlib.import_module(module), cls))
