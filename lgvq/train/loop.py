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
- NaN/inf detection, which names the step and the offending term: `TermWindow` (lgvq.train.terms) keeps
  the terms on the device and checks them once per log window (one host-device sync per `log_every`
  steps); `check_finite` is the eager check for tasks that want it before their backward pass;
- SIGINT/SIGTERM/SIGUSR1 (Ctrl-C, `scancel`, a SLURM time limit or pre-emption warning): the current
  step ends, a checkpoint is written and `TrainingInterrupted` is raised (the CLI exits quietly with
  128 + the signal number: 130, 143, 138), so a requeued job or Snakemake's `--retries` resumes it;
- a tqdm progress bar and a CSV loss log (`log.csv`: step + one column per term, each the term's value
  at the log step, not a mean over the window);
- an optional validation curve: `validate()` every `val_every` steps (widened so that a run logs at most
  `val_max_points`: `validation_interval`) and at the last step, its terms
  logged as `val_<term>` beside the training terms (lgvq.train.convergence reads them). It runs with the
  modules in eval mode and every RNG stream saved and restored, so a run with validation trains on
  exactly the numbers a run without it does, and a resumed run matches an uninterrupted one.
"""

from __future__ import annotations

import inspect
import math
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

from lgvq.io import ArtifactError
from lgvq.train.checkpoint import (  # noqa: F401  (re-exported: the loop's public API)
    CHECKPOINT_KEYS, CHECKPOINT_NAME, LOG_NAME, SUPERSEDED_DIR, CheckpointMismatchError, set_rng_state,
    swap_in_this_configs_checkpoint, load_checkpoint, save_checkpoint, write_log)
from lgvq.train.terms import NonFiniteLossError, TermWindow

if TYPE_CHECKING:
    from lgvq.train.distributed import DistInfo


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
    def train_step(self, batch: Any, step: int) -> Mapping[str, Tensor | float]: ...  # detached scalar terms


def validation_interval(val_every: int, max_steps: int, max_points: int) -> int:
    """Steps between validations: `val_every`, widened to ceil(max_steps / max_points) when the run is
    longer than `max_points` validations at `val_every` (0 = no cap). A validation pass costs a fixed
    number of forward passes, so validating every few steps of a long run is a tax on every step (and
    under data parallelism the other ranks wait for rank 0's pass); a bounded number of points is all
    the convergence verdict reads (lgvq.train.convergence: a line through the last fifth)."""
    if val_every <= 0 or max_points <= 0:
        return val_every
    return max(val_every, math.ceil(max_steps / max_points))


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
    resumed_at: int = 0     # the step this job started from: 0 trained from the start here, the last step only re-read

    def record(self) -> dict[str, int]:
        """The manifest's `training`: steps completed, and the step this job resumed at. Equal, the job trained
        nothing (a finished checkpoint re-read, e.g. to re-evaluate): its wall time is not the training's."""
        return {"steps": self.step, "resumed_at_step": self.resumed_at}


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
    validate: Callable[[], Mapping[str, float]] | None = None,
    val_every: int = 0,
    val_max_points: int = 0,
) -> LoopState:
    """Run `task` for `max_steps` optimisation steps, resuming from `out_dir/checkpoint.pt`.

    `epoch_batches(epoch[, start])` must return the batches of that epoch (from batch `start`)
    in a deterministic order (shuffle seeded by the epoch), so a resume at `batch_in_epoch`
    lands on the same data an uninterrupted run would see. `stop_after` ends the run early after that
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
    val_every = validation_interval(val_every, max_steps, val_max_points)
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
        swap_in_this_configs_checkpoint(out, config_hash)
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
        state = LoopState(payload["step"], payload["epoch"], payload["batch_in_epoch"], list(payload["log"]),
                          resumed_at=payload["step"])
        set_rng_state(payload["rng"])
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
    window = TermWindow()  # the terms since the last log point, on the device
    with _StopRequests() as stop:
        try:
            while state.step < max_steps:
                batches = _batches_from(epoch_batches, state.epoch, state.batch_in_epoch)
                exhausted = True
                for batch in batches:
                    window.add(task.train_step(batch, state.step), state.step)
                    state.step += 1
                    state.batch_in_epoch += 1
                    done = state.step >= max_steps or (stop_after is not None and state.step >= stop_after)
                    if state.step % log_every == 0 or state.step % ckpt_every == 0 or done:
                        terms = window.flush()  # the one sync of the window; raises on NaN/inf before a checkpoint
                        if state.step % log_every == 0 or state.step == max_steps:
                            state.log.append({"step": state.step, **terms})
                            bar.set_postfix({k: f"{v:.3g}" for k, v in terms.items()}, refresh=False)
                            if on_log is not None:
                                on_log(state.step, terms)
                    if (validate is not None and val_every > 0 and dist.is_main  # only rank 0 writes the log
                            and (state.step % val_every == 0 or state.step == max_steps)):
                        _log_validation(state, task, validate)
                    bar.update(1)
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
                        window.flush()  # a NaN/inf in the window is never checkpointed
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


@torch.no_grad()
def _log_validation(state: LoopState, task: TrainTask, validate: Callable[[], Mapping[str, float]]) -> None:
    """`validate()`'s terms as `val_<term>` in this step's log row (appended when the step logged none)."""
    modes = {name: m.training for name, m in task.modules().items()}
    py, np_state = random.getstate(), np.random.get_state()
    cuda = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):  # eval mode draws nothing, but a task's val batches may
        torch.manual_seed(0)  # what a val loss draws (diffusion time steps, masks) is the same at every step
        for m in task.modules().values():
            m.eval()
        try:
            terms = {f"val_{k}": float(v) for k, v in validate().items()}
        finally:
            for name, m in task.modules().items():
                m.train(modes[name])
    random.setstate(py)
    np.random.set_state(np_state)
    assert state.log is not None
    if state.log and state.log[-1]["step"] == state.step:
        state.log[-1].update(terms)
    else:
        state.log.append({"step": state.step, **terms})


def _batches_from(epoch_batches: Callable[..., Iterable[Any]], epoch: int, start: int) -> Iterator[Any]:
    """The batches of `epoch` from batch `start` on: built from there when `epoch_batches` takes `start`
    (a data loader never decodes the skipped images), else drawn and dropped."""
    if "start" in inspect.signature(epoch_batches).parameters:
        return iter(epoch_batches(epoch, start=start))
    batches = iter(epoch_batches(epoch))
    for _ in range(start):
        next(batches)
    return batches


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

    def batches(epoch: int, start: int = 0):  # `start`: the first batch (train_loop's resume position)
        order = epoch_order(n, seed, epoch)
        for i in range(start * step, n, step):
            chunk = order[i : i + step]
            if dist.enabled and len(chunk) < step:
                break
            yield make(shard(chunk, dist), epoch)

    return batches
