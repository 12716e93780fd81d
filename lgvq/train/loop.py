"""One training loop for every model in the harness (tokenizers, second stage, downstream heads).

A model plugs in as a `TrainTask`: it owns its modules and optimisers and performs one
optimisation step per batch. The loop owns everything that must be identical across models
and that a crash must not lose:

- seeding, and the data position (epoch, batch within epoch) so a resumed run sees exactly
  the batches an uninterrupted run would;
- checkpoints every `ckpt_every` steps, written atomically, holding modules, optimisers,
  RNG states, the loss log and the config hash (a checkpoint from another config is refused);
- exact resume: re-running the same command continues from the last checkpoint; a checkpoint
  of another config is set aside (`superseded/<hash>/`), never resumed and never deleted;
- NaN/inf detection (`check_finite`), which names the step and the offending term;
- SIGINT/SIGTERM/SIGUSR1 (Ctrl-C, `scancel`, a SLURM time limit or pre-emption warning): the current
  step ends, a checkpoint is written and `TrainingInterrupted` is raised (the CLI exits quietly with
  128 + the signal number: 130, 143, 138), so a requeued job or Snakemake's `--retries` resumes it;
- a tqdm progress bar and a CSV loss log (`log.csv`: step + one column per term).
"""

from __future__ import annotations

import csv
import io
import os
import random
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from lgvq.io import ArtifactError, atomic_torch_save, atomic_write_text

if TYPE_CHECKING:
    from lgvq.train.distributed import DistInfo

CHECKPOINT_NAME = "checkpoint.pt"
SUPERSEDED_DIR = "superseded"  # <out_dir>/superseded/<config hash>/: another config's checkpoint and log
CHECKPOINT_KEYS = ("config_hash", "step", "epoch", "batch_in_epoch", "log", "modules", "optimizers", "rng")
LOG_NAME = "log.csv"


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or inf; the message names the step and the term."""


class CheckpointMismatchError(ArtifactError):
    """The checkpoint on disk was produced by a different config.

    An ArtifactError (itself a RuntimeError), so `lgvq` reports it as one line naming the
    checkpoint and exits with status 2 instead of printing a traceback."""


class TrainingInterrupted(Exception):
    """SIGINT, SIGTERM or SIGUSR1 arrived (Ctrl-C, `scancel`, a pre-empted SLURM job): training finished the
    step it was in, wrote a checkpoint, and stops. Re-running the same command continues from it."""

    def __init__(self, signum: int, step: int, checkpoint: Path) -> None:
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        super().__init__(f"interrupted by {signal.Signals(signum).name} at step {step}: checkpoint {checkpoint} "
                         "saved; run the same command again to continue")


class _StopRequests:
    """While active, SIGINT, SIGTERM and SIGUSR1 only record that a stop was asked for; the loop checks
    it between steps (a Python flag: no device sync). Only the main thread can install handlers.
    SIGUSR1 is what `sbatch --signal=USR1@<s>` sends ahead of a time limit: the warning a cluster
    gives so the job can checkpoint before SIGKILL."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopRequests":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._record)
        return self

    def _record(self, signum, frame) -> None:
        self.signum = self.signum or signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class TrainTask(Protocol):
    def modules(self) -> Mapping[str, nn.Module]: ...
    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]: ...
    def train_step(self, batch: Any, step: int) -> Mapping[str, float]: ...


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def check_finite(terms: Mapping[str, Tensor], step: int) -> None:
    """Raise before the backward pass if any loss term is NaN/inf, naming step and term."""
    for name, value in terms.items():
        if not bool(torch.isfinite(value.detach()).all()):
            raise NonFiniteLossError(f"non-finite loss at step {step}: term '{name}' = {value.detach().float().mean().item()}")


@dataclass
class LoopState:
    step: int = 0           # optimisation steps completed
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` already consumed
    log: list[dict[str, float]] | None = None


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


def _set_rng_state(state: dict[str, Any]) -> None:
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


def _swap_in_this_configs_checkpoint(out: Path, config_hash: str) -> None:
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


def train_loop(
    task: TrainTask,
    epoch_batches: Callable[[int], Iterable[Any]],
    *,
    out_dir: str | Path,
    max_steps: int,
    seed: int,
    config_hash: str,
    ckpt_every: int = 100,
    log_every: int = 10,
    desc: str = "train",
    on_log: Callable[[int, Mapping[str, float]], None] | None = None,
    on_checkpoint: Callable[[int], None] | None = None,
    stop_after: int | None = None,
    dist: "DistInfo | None" = None,
) -> LoopState:
    """Run `task` for `max_steps` optimisation steps, resuming from `out_dir/checkpoint.pt`.

    `epoch_batches(epoch)` must return the batches of that epoch in a deterministic order
    (shuffle seeded by the epoch), so skipping `batch_in_epoch` batches on resume lands on
    the same data an uninterrupted run would see. `stop_after` ends the run early after that
    many steps (with a checkpoint), used by tests to simulate an interruption.
    `out_dir` belongs to this run: hidden temporaries a killed writer left under it are removed.
    `on_checkpoint(step)` runs after each checkpoint (e.g. validation sample grids); it must
    not consume the global RNG, or resumed runs would diverge from uninterrupted ones.
    Data parallel (`dist`, lgvq.train.distributed): every rank runs this loop on its batch
    shares; only rank 0 writes (checkpoints, log, `on_checkpoint`), the others wait for it, and
    every rank resumes from the same checkpoint.
    """
    from lgvq.train.distributed import SINGLE, barrier

    dist = dist or SINGLE
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT_NAME
    # A run killed (SIGKILL) while writing leaves atomic_path's hidden temporary behind (it only
    # cleans up after exceptions). `out_dir` belongs to this training (one writer: its re-run),
    # so temporaries under it (checkpoint, log, and the caller's model/manifest/sample grids) go.
    if dist.is_main:
        for stale in out.rglob(".*.tmp-*"):
            if stale.is_file():
                stale.unlink(missing_ok=True)
        _swap_in_this_configs_checkpoint(out, config_hash)
    barrier(dist)
    seed_everything(seed)
    state = LoopState(log=[])
    if ckpt_path.exists():
        payload = load_checkpoint(ckpt_path, config_hash)
        try:
            for name, module in task.modules().items():
                module.load_state_dict(payload["modules"][name])
            for name, opt in task.optimizers().items():
                opt.load_state_dict(payload["optimizers"][name])
        except (KeyError, RuntimeError, ValueError) as e:
            # Same config hash but other modules/shapes: the model code changed since the
            # checkpoint was written. Name the file instead of a bare state-dict traceback.
            raise ArtifactError(f"checkpoint {ckpt_path} does not fit this model ({type(e).__name__}: "
                                f"{str(e)[:300]}); delete it to retrain from scratch") from e
        state = LoopState(payload["step"], payload["epoch"], payload["batch_in_epoch"], list(payload["log"]))
        _set_rng_state(payload["rng"])
        if dist.is_main and state.step < max_steps:
            print(f"lgvq: resuming {ckpt_path} at step {state.step} of {max_steps}", flush=True)
    if state.step >= max_steps:
        return state
    if dist.rank > 0:
        # Data parallel: ranks other than 0 draw their own random numbers (dropout, LG word masks,
        # diffusion time steps), else a global batch would repeat rank 0's draws on every share.
        # Rank 0 keeps the single-process stream; a resumed rank > 0 restarts from (seed, rank, step).
        seed_everything(seed * 1_000_003 + dist.rank * 7919 + state.step)

    for module in task.modules().values():
        module.train()
    bar = tqdm(total=max_steps, initial=state.step, desc=desc, dynamic_ncols=True, mininterval=1.0,
               disable=not dist.is_main)
    last_saved = state.step
    with _StopRequests() as stop:
        try:
            while state.step < max_steps:
                batches: Iterator[Any] = iter(epoch_batches(state.epoch))
                for _ in range(state.batch_in_epoch):  # fast-forward to the resume position
                    next(batches)
                exhausted = True
                for batch in batches:
                    terms = dict(task.train_step(batch, state.step))
                    state.step += 1
                    state.batch_in_epoch += 1
                    if state.step % log_every == 0 or state.step == max_steps:
                        row = {"step": state.step, **{k: float(v) for k, v in terms.items()}}
                        state.log.append(row)
                        bar.set_postfix({k: f"{v:.3g}" for k, v in terms.items()}, refresh=False)
                        if on_log is not None:
                            on_log(state.step, terms)
                    bar.update(1)
                    done = state.step >= max_steps or (stop_after is not None and state.step >= stop_after)
                    if state.step % ckpt_every == 0 or done:
                        if dist.is_main:
                            save_checkpoint(ckpt_path, task, state, config_hash)
                            write_log(out / LOG_NAME, state.log)
                            if on_checkpoint is not None:
                                on_checkpoint(state.step)
                        barrier(dist)
                        last_saved = state.step
                    if done:
                        exhausted = False
                        break
                    if stop.signum is not None:
                        # No collective here: data-parallel ranks are in step (every step all-reduces), rank 0
                        # writes, and a rank that stops first makes torchrun end the others.
                        if dist.is_main and last_saved != state.step:
                            save_checkpoint(ckpt_path, task, state, config_hash)
                            write_log(out / LOG_NAME, state.log)
                        raise TrainingInterrupted(stop.signum, state.step, ckpt_path)
                if not exhausted:
                    break
                if state.batch_in_epoch == 0:
                    raise ArtifactError("the training data yielded no batches (empty split or batch larger than the split)")
                state.epoch += 1
                state.batch_in_epoch = 0
        finally:
            bar.close()
    if last_saved != state.step:
        if dist.is_main:
            save_checkpoint(ckpt_path, task, state, config_hash)
            write_log(out / LOG_NAME, state.log)
        barrier(dist)
    return state


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """Deterministic shuffled index order for one epoch (independent of the global RNG)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def shuffled_batches(n: int, batch_size: int, seed: int, make: Callable[[list[int], int], Any],
                     dist: "DistInfo | None" = None, *, key: str = "batch_size"):
    """`epoch_batches` for `train_loop` over n items: each epoch's `epoch_order` cut into
    batches (the last one may be smaller), each built by `make(indices, epoch)`.

    Data parallel (`dist`): `batch_size` is per process, as for the tokenizers; every rank cuts the
    same global batches of world x batch_size and builds only its share. The ragged last batch
    is dropped there, so every rank's share has the same size."""
    from lgvq.train.distributed import SINGLE, shard

    dist = dist or SINGLE
    step = batch_size * dist.world
    if dist.enabled and n < step:
        from lgvq.config import ConfigError

        raise ConfigError(f"{key}: {dist.world} processes x {batch_size} is more than the {n} training items")

    def batches(epoch: int):
        order = epoch_order(n, seed, epoch)
        for i in range(0, n, step):
            chunk = order[i : i + step]
            if dist.enabled and len(chunk) < step:
                break
            yield make(shard(chunk, dist), epoch)

    return batches
