"""Training checkpoints: what `train_loop` writes and reads to resume exactly.

A checkpoint holds the modules, optimisers, RNG states, data position, loss log and the config
hash; it is written atomically, loaded with `weights_only`, and refused when another config wrote
it (`train_loop` first sets such a file aside in `superseded/<hash>/`, never deleting it).
"""

from __future__ import annotations

import csv
import io
import os
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lgvq.io import ArtifactError, atomic_torch_save, atomic_write_text

if TYPE_CHECKING:
    from lgvq.train.loop import LoopState, TrainTask

CHECKPOINT_NAME = "checkpoint.pt"
SUPERSEDED_DIR = "superseded"  # <out_dir>/superseded/<config hash>/: another config's checkpoint and log
CHECKPOINT_KEYS = ("config_hash", "step", "epoch", "batch_in_epoch", "log", "modules", "optimizers", "rng")
LOG_NAME = "log.csv"


class CheckpointMismatchError(ArtifactError):
    """The checkpoint on disk was produced by a different config.

    An ArtifactError (itself a RuntimeError), so `lgvq` reports it as one line naming the
    checkpoint and exits with status 2 instead of printing a traceback."""


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "python": list(random.getstate()[1]) + [random.getstate()[2] if random.getstate()[2] is not None else -1.0],
        "python_version": random.getstate()[0],
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_gauss": [int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    gauss = None if py[-1] == -1.0 else py[-1]
    random.setstate((state["python_version"], tuple(int(v) for v in py[:-1]), gauss))
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"],
                         state["numpy_gauss"][0], state["numpy_gauss"][1]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, task: TrainTask, state: LoopState, config_hash: str) -> None:
    payload = {
        "config_hash": config_hash,
        "step": state.step,
        "epoch": state.epoch,
        "batch_in_epoch": state.batch_in_epoch,
        "log": state.log or [],
        "modules": {k: m.state_dict() for k, m in task.modules().items()},
        "optimizers": {k: o.state_dict() for k, o in task.optimizers().items()},
        "rng": _rng_state(),
    }
    atomic_torch_save(path, payload)


def load_checkpoint(path: Path, config_hash: str | None = None) -> dict[str, Any]:
    """Load safely (weights_only) and refuse a checkpoint written for another config."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated/corrupt files
        # The type is part of the message: an empty file raises an EOFError whose text is empty.
        raise ArtifactError(f"corrupt or unreadable checkpoint {path} ({type(e).__name__}: {e}). "
                            "Delete it to retrain from scratch.") from e
    # A loadable file that is not a training checkpoint (e.g. a model.pt copied over it) would
    # otherwise fail later with a bare KeyError.
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(payload, dict) or k not in payload]
    if missing:
        raise ArtifactError(f"{path} is not a training checkpoint (missing {missing}). "
                            "Delete it to retrain from scratch.")
    if config_hash is not None and payload.get("config_hash") != config_hash:
        raise CheckpointMismatchError(
            f"checkpoint {path} was written for config hash {payload.get('config_hash')}, "
            f"but this run's config hash is {config_hash}; refusing to resume from another config. "
            "(train_loop sets such a checkpoint aside in superseded/<hash>/ before it loads one)"
        )
    return payload


def _checkpoint_hash(path: Path) -> str | None:
    """The config hash a checkpoint was written for (None when unreadable: load_checkpoint says why)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return None
    return payload.get("config_hash") if isinstance(payload, dict) else None


def swap_in_this_configs_checkpoint(out: Path, config_hash: str) -> None:
    """A changed config never needs a manual delete, and never resumes another config's state.

    A checkpoint (and its loss log) written for another config hash is moved to
    `superseded/<its hash>/` and training starts fresh; one kept there for *this* hash (the
    config was changed and then changed back) is moved back and resumed. One line says which."""
    ckpt = out / CHECKPOINT_NAME
    other = _checkpoint_hash(ckpt) if ckpt.exists() else None
    if other is not None and other != config_hash:
        aside = out / SUPERSEDED_DIR / other
        aside.mkdir(parents=True, exist_ok=True)
        for name in (CHECKPOINT_NAME, LOG_NAME):
            if (out / name).exists():
                os.replace(out / name, aside / name)
        print(f"lgvq: {ckpt} was written for config hash {other}, not this run's {config_hash}: "
              f"kept it in {aside}/ and training from scratch", flush=True)
    kept = out / SUPERSEDED_DIR / config_hash
    if not ckpt.exists() and (kept / CHECKPOINT_NAME).is_file():
        for name in (CHECKPOINT_NAME, LOG_NAME):
            if (kept / name).exists():
                os.replace(kept / name, out / name)
        if not any(kept.iterdir()):
            kept.rmdir()
        print(f"lgvq: resuming this config's checkpoint (hash {config_hash}), kept in {kept}/ while another "
              "config ran", flush=True)


def write_log(path: Path, rows: list[dict[str, float]]) -> None:
    keys: list[str] = ["step"]
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())
