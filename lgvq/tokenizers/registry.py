"""Tokenizers by the config's `class:` value, and what each one needs.

`tokenizers.<name>.class` is either
- a registered name: a built-in (`lgvq.tokenizers.BUILTIN`), one a `plugins:` module registers
  with `@TOKENIZERS.register("name")`, or one an installed distribution declares under the
  entry-point group `lgvq.tokenizers`; or
- an import path `package.module:ClassName`, imported by every process that builds it (each job
  of the DAG is a fresh process, so nothing has to be registered beforehand).

This module imports no torch at module level: the config layer asks it whether a `class:` value
is well formed, and which inputs (`Needs`) a class declares, while the Snakefile builds the DAG;
for a built-in neither imports the class.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Callable

from lgvq.errors import ConfigError
from lgvq.registry import Registry, check_import_path, import_object, is_import_path
from lgvq.tokenizers import BUILTIN, BUILTIN_NEEDS
from lgvq.tokenizers.needs import Needs

if TYPE_CHECKING:
    import torch

    from lgvq.tokenizers.base import Tokenizer

ENTRY_POINT_GROUP = "lgvq.tokenizers"
TOKENIZERS = Registry("tokenizer", "tokenizers.*.class", BUILTIN, instantiate=False, group=ENTRY_POINT_GROUP)


def register_tokenizer(name: str):
    """Decorator for a `plugins:` module (same as `@TOKENIZERS.register(name)`)."""
    return TOKENIZERS.register(name)


def list_tokenizers() -> list[str]:
    return sorted(TOKENIZERS.names())


def check_form(spec: str, key: str) -> None:
    """An import path is well formed (validate_config: a typo whatever machine reads the config).
    Whether a name is registered or a path imports depends on what is installed: preflight asks."""
    check_import_path(spec, key)


def check_spec(spec: str, key: str) -> None:
    """A `class:` value is a registered name or a well-formed import path (no import: torch-free)."""
    check_form(spec, key)
    if not is_import_path(spec) and spec not in TOKENIZERS:
        raise ConfigError(f"{key}: unknown tokenizer '{spec}' (registered: {', '.join(list_tokenizers())}; or give "
                          "an import path package.module:ClassName)")


def origin(spec: str) -> str:
    """Where a `class:` value's class comes from, for `lgvq tokenizer list`."""
    return f"import path ({spec})" if is_import_path(spec) else TOKENIZERS.origin(spec)


def tokenizer_class(spec: str, key: str = "tokenizers.*.class") -> type[Tokenizer]:
    """The class a `class:` value names; a ConfigError naming `key` when it cannot be imported or is
    not a `Tokenizer` subclass. (Python caches the import: asking again costs nothing.)"""
    check_spec(spec, key)
    cls = import_object(spec, key) if is_import_path(spec) else TOKENIZERS.get(spec, key)
    from lgvq.tokenizers.base import Tokenizer

    if not (isinstance(cls, type) and issubclass(cls, Tokenizer)):
        raise ConfigError(f"{key}: '{spec}' is {cls!r}, not a subclass of lgvq.tokenizers.base.Tokenizer")
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise ConfigError(f"{key}: '{spec}' does not implement the Tokenizer method(s) {missing}")
    if not isinstance(cls.needs, Needs):
        raise ConfigError(f"{key}: '{spec}'.needs is {cls.needs!r}, not a lgvq.tokenizers.needs.Needs")
    return cls


def tokenizer_needs(spec: str, key: str = "tokenizers.*.class") -> Needs:
    """What the class declares; a built-in's from BUILTIN_NEEDS without importing it (or torch)."""
    if spec in BUILTIN:
        return BUILTIN_NEEDS.get(spec, Needs())
    return tokenizer_class(spec, key).needs


def accepted_params(cls: type) -> set[str]:
    """The keyword arguments a tokenizer class's constructors take (its config `params`)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" in klass.__dict__:
            names |= {p for p in inspect.signature(klass.__init__).parameters if p not in ("self", "params", "vq_params")}
    return names


def build_tokenizer(spec: str, params: dict[str, Any], *, image_size: int,
                    word_embeddings: Callable[[int], torch.Tensor] | None = None, text_cache: Any = None,
                    key: str = "tokenizers.*") -> Tokenizer:
    """`key` is the config entry the class and params came from (e.g. "tokenizers.vqgan"), so an
    error names the exact key to fix. `word_embeddings` / `text_cache` go to a class whose `needs`
    asks for them (and only to such a class)."""
    cls = tokenizer_class(spec, f"{key}.class")
    unknown = set(params) - accepted_params(cls)
    if unknown:
        raise ConfigError(f"{key}.params: unknown parameter(s) {sorted(unknown)} for '{spec}'")
    kwargs = dict(params, image_size=image_size)
    if cls.needs.word_embeddings:
        if word_embeddings is None:
            raise ConfigError(f"tokenizer '{spec}' needs word embeddings (a text cache) to build its codebook")
        kwargs["word_embeddings"] = word_embeddings
    if cls.needs.text_cache:
        if text_cache is None:
            raise ConfigError(f"tokenizer '{spec}' needs the text cache (its class declares Needs(text_cache=True))")
        kwargs["text_cache"] = text_cache
    return cls(**kwargs)
