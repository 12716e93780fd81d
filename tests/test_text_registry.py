"""Text encoders register the way tokenizers do: built-in names, `@TEXT_ENCODERS.register` in a
`plugins:` module, or an import path `package.module:ClassName` in `text_encoder.name`."""

from __future__ import annotations

from pathlib import Path

import pytest

from lgvq.config import ConfigError, load_config, validate_config
from lgvq.pipeline import paths
from lgvq.pipeline.preflight import problems
from lgvq.text.registry import TEXT_ENCODERS, get_text_encoder, text_encoder_class

ROOT = Path(__file__).resolve().parent.parent

MODULE = '''
"""A weight-free text encoder: hashes words to rows of a fixed random table."""
import torch

from lgvq.text.base import TextEncoder, TextFeatures
from lgvq.text.registry import TEXT_ENCODERS


class HashEncoder(TextEncoder):
    name, model_id, width, vocab_size, pad_id, mask_id = "hash", "hash-table", 8, 64, 0, 1

    def __init__(self, path=None, max_length=30, device="cpu"):
        self.max_length, self.device = max_length, device
        self.table = torch.randn(self.vocab_size, self.width, generator=torch.Generator().manual_seed(0))

    def encode(self, captions):
        ids = torch.zeros(len(captions), self.max_length, dtype=torch.long)
        for i, c in enumerate(captions):
            words = [2 + sum(map(ord, w)) % 62 for w in c.split()][: self.max_length]
            ids[i, : len(words)] = torch.tensor(words)
        valid = ids > 0
        tokens = self.table[ids]
        return TextFeatures(ids, tokens, valid, torch.zeros_like(valid), tokens.mean(1))


TEXT_ENCODERS.register("hash_words", HashEncoder)


class NotAnEncoder:
    pass
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch) -> str:
    (tmp_path / "hash_encoder.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "hash_encoder"


def smoke(name: str, plugins: list[str] = ()) -> dict:
    cfg = load_config(ROOT / "config" / "smoke.yaml")
    cfg["text_encoder"]["name"] = name
    cfg["plugins"] = list(plugins)
    return cfg


def test_the_builtins_are_registered_by_name_without_importing_them():
    assert TEXT_ENCODERS.names()[:2] == ["minilm", "clip"]
    assert TEXT_ENCODERS.is_builtin("minilm") and TEXT_ENCODERS.origin("clip") == "built-in (lgvq.text.hf:CLIPTextEncoder)"


def test_an_import_path_encoder_is_built_and_records_the_configs_spelling(plugin):
    spec = f"{plugin}:HashEncoder"
    cfg = validate_config(smoke(spec))
    assert not [p for p in problems(cfg) if "text_encoder" in p]
    enc = get_text_encoder(spec, max_length=12)
    assert type(enc).__name__ == "HashEncoder" and enc.max_length == 12
    assert enc.name == spec  # what the text cache records, and later jobs check it against
    assert enc.encode(["a red circle"]).tokens.shape == (1, 12, 8)
    # the cache file is named after it, ':' written as '.' (a path and wildcard safe name)
    assert paths.text_cache("res", "shapes", spec) == Path("res/shapes/text/hash_encoder.HashEncoder.npz")
    assert paths.text_cache("res", "shapes", "minilm") == Path("res/shapes/text/minilm.npz")


def test_a_plugin_module_registers_a_name(plugin):
    validate_config(smoke("hash_words", [plugin]))
    assert TEXT_ENCODERS.origin("hash_words") == f"plug-in module {plugin}"
    assert type(get_text_encoder("hash_words", max_length=6)).__name__ == "HashEncoder"


def test_a_wrong_name_is_refused_naming_the_key(plugin):
    with pytest.raises(ConfigError, match=r"text_encoder\.name: unknown text encoder\(s\) \['minilmm'\].*minilm, clip"):
        validate_config(smoke("minilmm"))
    with pytest.raises(ConfigError, match=r"text_encoder\.name: 'hash encoder:X' is not an import path"):
        validate_config(smoke("hash encoder:X"))
    with pytest.raises(ConfigError, match=r"text_encoder\.name: '.*NotAnEncoder' is .*not a subclass of lgvq\.text"):
        text_encoder_class(f"{plugin}:NotAnEncoder")
    # a path that does not import passes the (torch-free) config check; preflight names it before any job runs
    cfg = validate_config(smoke("no_such_package.enc:Encoder"))
    assert any(p.startswith("text_encoder.name: cannot import module 'no_such_package.enc'") for p in problems(cfg))
