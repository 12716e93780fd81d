"""Text encoders by the config's `text_encoder.name`.

The name is either
- a registered name: a built-in (`minilm`, the offline default; `clip`, the paper's, from a local
  directory), one a `plugins:` module registers with `@TEXT_ENCODERS.register("name")`, or one an
  installed distribution declares under the entry-point group `lgvq.text_encoders`; or
- an import path `package.module:ClassName`, imported by every job that encodes text.

A class is a `lgvq.text.base.TextEncoder` subclass built as `cls(path, max_length=..., device=...)`
(`text_encoder.path`, `text_encoder.max_length`, the job's device). Its text cache is
results/<dataset>/text/<name>.npz, an import path's ':' written as '.' (lgvq.pipeline.paths).

This module imports no torch at module level: the config layer checks the name while the
Snakefile builds the DAG.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lgvq.errors import ConfigError
from lgvq.registry import Registry, check_import_path, import_object, is_import_path

if TYPE_CHECKING:
    from lgvq.text.base import TextEncoder

KEY = "text_encoder.name"
TEXT_ENCODERS = Registry("text encoder", KEY, {
    "minilm": "lgvq.text.hf:MiniLMEncoder",
    "clip": "lgvq.text.hf:CLIPTextEncoder",
}, instantiate=False, group="lgvq.text_encoders")


def check_name(spec: str, key: str = KEY) -> None:
    """A registered name or a well-formed import path (no import: torch-free; validate_config)."""
    if is_import_path(spec):
        check_import_path(spec, key)
    else:
        TEXT_ENCODERS.check([spec], key)


def text_encoder_class(spec: str, key: str = KEY) -> type[TextEncoder]:
    """The class `spec` names; a ConfigError naming `key` when it cannot be imported or is not a
    TextEncoder subclass."""
    check_name(spec, key)
    cls = import_object(spec, key) if is_import_path(spec) else TEXT_ENCODERS.get(spec, key)
    from lgvq.text.base import TextEncoder

    if not (isinstance(cls, type) and issubclass(cls, TextEncoder)):
        raise ConfigError(f"{key}: '{spec}' is {cls!r}, not a subclass of lgvq.text.base.TextEncoder")
    return cls


def get_text_encoder(name: str, *, path: str | None = None, max_length: int = 30, device: str = "cpu") -> TextEncoder:
    encoder = text_encoder_class(name)(path, max_length=max_length, device=device)
    # The config's spelling is what the text cache records and what later jobs check it against.
    encoder.name = name
    return encoder
