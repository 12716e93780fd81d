"""What the bad-input catalogue (tests/bad_inputs/test_bad_*.py) shares: the tiny run's config, a
stand-in text encoder, the per-case environment `Env` and small helpers. The fixtures that build
the tiny run once per session and copy it per case are in conftest.py beside this file."""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from lgvq.cli import main
from lgvq.text.base import TextEncoder, TextFeatures

BIN = Path(sys.executable).parent
TINY = {"ch": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "z_channels": 8,
        "embed_dim": 8, "n_embed": 16}
CONFIG = {
    "name": "bad-inputs",
    "device": "cpu",
    "seeds": [0],
    "datasets": {"shapes": {"source": "shapes", "synth": {"n": 30, "size": 16, "seed": 0}, "image_size": 16,
                            "eval_images": 3}},
    "text_encoder": {"name": "minilm", "max_length": 30},
    "tokenizers": {"vqvae": {"class": "vqvae", "params": dict(TINY)},
                   "vqgan": {"class": "vqgan", "params": {**TINY, "disc_start": 1, "disc_ch": 8, "disc_layers": 1}}},
    "train": {"steps": 2, "batch_size": 4, "lr": 0.001, "ckpt_every": 1, "log_every": 1},
    "eval": {"shapes_cnn_epochs": 1},
}
RUN = ["--dataset", "shapes", "--tokenizer", "vqvae", "--variant", "lg", "--seed", "0"]


class StandInEncoder(TextEncoder):
    """A deterministic text encoder without model weights (the cache format is what matters here;
    the real MiniLM is exercised by test_text.py and scripts/kill_anywhere.py)."""

    name, model_id, width, max_length, vocab_size, pad_id = "minilm", "stand-in", 16, 30, 50, 0

    def __init__(self) -> None:
        self.table = torch.randn(self.vocab_size, self.width, generator=torch.Generator().manual_seed(0))

    def encode(self, captions: list[str]) -> TextFeatures:
        ids = torch.zeros(len(captions), self.max_length, dtype=torch.long)
        valid = torch.zeros_like(ids, dtype=torch.bool)
        special = torch.zeros_like(valid)
        for i, cap in enumerate(captions):
            toks = [1] + [2 + sum(map(ord, w)) % 48 for w in cap.split()][: self.max_length - 2] + [1]
            ids[i, : len(toks)] = torch.tensor(toks)
            valid[i, : len(toks)] = True
            special[i, [0, len(toks) - 1]] = True
        tokens = self.table[ids]
        return TextFeatures(ids, tokens, valid, special, tokens.mean(1))

    def token_embedding_matrix(self) -> torch.Tensor:
        return self.table


@dataclass
class Env:
    dir: Path
    capsys: pytest.CaptureFixture
    monkeypatch: pytest.MonkeyPatch

    @property
    def res(self) -> Path:
        return self.dir / "res" / "shapes"

    @property
    def data(self) -> Path:
        return self.res / "data" / "generated"

    @property
    def tok(self) -> Path:
        return self.res / "tokenizers" / "vqvae" / "lg" / "seed0"

    def config(self, patch: Callable[[dict], None] | None = None, name: str = "config.yaml") -> Path:
        cfg = {**copy.deepcopy(CONFIG), "results_dir": str(self.dir / "res")}
        if patch is not None:
            patch(cfg)
        return write_config(self.dir, cfg, name)

    def cli(self, *argv: str, patch: Callable[[dict], None] | None = None, run: list[str] | None = None,
            expect: str, protect: tuple[Path, ...] = (), absent: tuple[Path, ...] = ()) -> str:
        """Run `lgvq <argv> --config <patched config> <run selectors>`: exit status 2, stderr
        matching `expect`, every `protect` file unchanged and no `absent` path created."""
        before = snapshot(protect)
        self.capsys.readouterr()
        rc = main([*argv, "--config", str(self.config(patch)), *(RUN if run is None else run)])
        err = self.capsys.readouterr().err
        assert rc == 2, f"exit status {rc}, stderr: {err}"
        assert re.search(expect, err), f"{expect!r} not in: {err}"
        # one clear line (after any progress bar output), no traceback
        assert err.count("lgvq: error: ") == 1 and "Traceback" not in err, err
        assert snapshot(protect) == before, "an existing output was modified"
        for path in absent:
            assert not path.exists(), f"{path} was created by a failing command"
        return err


def write_config(root: Path, cfg: dict, name: str = "config.yaml") -> Path:
    cfg = {"results_dir": str(root / "res"), **cfg}
    path = root / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def snapshot(paths) -> dict[str, tuple[bytes, int]]:
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}


def truncate(path: Path, keep: float) -> None:
    """Keep the first `keep` bytes (an int) or that fraction of the file (a float)."""
    data = path.read_bytes()
    path.write_bytes(data[: keep if isinstance(keep, int) else int(len(data) * keep)])


def p(path: Path) -> str:
    """A path as a regex that must appear in the message."""
    return re.escape(str(path))



def set_key(key: str, value):
    """A config patch setting a dotted key (created if absent)."""
    def patch(cfg: dict) -> None:
        *parents, last = key.split(".")
        node = cfg
        for k in parents:
            node = node.setdefault(k, {})
        node[last] = value
    return patch


def catalogue() -> tuple[dict[str, Callable[[Env], None]], Callable]:
    """A file's cases (name -> function) and the `@case` decorator that adds one."""
    cases: dict[str, Callable[[Env], None]] = {}

    def case(fn: Callable[[Env], None]) -> Callable[[Env], None]:
        cases[fn.__name__] = fn
        return fn

    return cases, case
