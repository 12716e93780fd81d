"""Streaming image input: a `torch.utils.data.DataLoader` whose workers decode the next batches
while the model trains on the current one.

Determinism is what makes this safe for exact resume:
- which images form a batch is a pure function of (seed, epoch, rank, world size, position)
  (`epoch_batch_indices`), so a run resumed mid-epoch builds only the batches it still needs;
- what an image looks like (crop, flip, caption) is drawn by the dataset from (seed, epoch, index),
  never from a worker's RNG, so the number of workers cannot change a batch;
- the loader's own base seed comes from a private generator, never the global torch RNG that
  dropout, LG word masks and CVQ anchors draw from (a DataLoader draws one per iterator, so a
  resumed run would otherwise shift that stream by one draw).

The dataset holds records only; images are decoded per item, in a worker or in-process (workers=0).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lgvq.config import ConfigError
from lgvq.io import ArtifactError

if TYPE_CHECKING:
    from lgvq.settings import DataSettings

THREADS_ENV = "LGVQ_THREADS"  # set by lgvq.pipeline.common.set_threads from the job's --threads


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_workers(setting: int | str, threads: int | None = None, *, key: str = "data.loader_workers") -> int:
    """Worker processes for a loader. "auto": one fewer than the job's threads (Snakemake's `threads`,
    passed as --threads; else the CPUs this process may run on), since the training thread needs one;
    a job given one thread decodes in-process. An int is taken as is (0 = in-process)."""
    if setting == "auto":
        if threads is None:
            env = os.environ.get(THREADS_ENV)
            threads = int(env) if env else available_cpus()
        return max(0, min(threads, available_cpus()) - 1)
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 0:
        raise ConfigError(f"{key}: expected 'auto' or an integer >= 0, got {setting!r}")
    return setting


def epoch_batch_indices(n: int, batch_size: int, order: Sequence[int], *, rank: int = 0, world: int = 1,
                        start: int = 0, drop_last: bool = True) -> list[list[int]]:
    """This rank's share of each global batch of one epoch, from batch `start` on.

    `order` is the epoch's index permutation (lgvq.train.loop.epoch_order(n, seed, epoch)); global
    batches hold `batch_size` (already world x per-process) consecutive entries of it, and rank r
    takes its contiguous share of each, as `lgvq.train.distributed.shard` does."""
    if len(order) != n:
        raise ValueError(f"epoch order has {len(order)} entries for {n} items")
    if batch_size % world:
        raise ValueError(f"a batch of {batch_size} does not split evenly over {world} processes")
    share = batch_size // world
    stop = n - batch_size + 1 if drop_last else n
    out = []
    for i in range(start * batch_size, max(stop, 0), batch_size):
        chunk = list(order[i : i + batch_size])
        if world > 1:
            chunk = chunk[rank * share : (rank + 1) * share]
        out.append(chunk)
    return out


class EpochBatchSampler(Sampler[list[int]]):
    """A batch sampler over fixed, precomputed batches (a list of index lists): the DataLoader asks it
    for nothing but these, so skipped batches are never decoded."""

    def __init__(self, batches: Sequence[list[int]]) -> None:
        self.batches = [list(b) for b in batches]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def collate_images(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Worker-side collation: the pixels stacked, the rest as lists (text features are attached in the
    main process, so workers never receive the text cache)."""
    batch: dict[str, Any] = {"image": torch.stack([it["image"] for it in items])}
    for key in ("image_id", "caption", "index"):
        batch[key] = [it[key] for it in items]
    if "mask" in items[0]:
        batch["mask"] = torch.stack([it["mask"] for it in items])
    return batch


def image_batches(dataset: Dataset, batches: Iterable[list[int]], *, workers: int = 0, pin_memory: bool = False,
                  prefetch: int = 2, collate: Callable[[list[dict[str, Any]]], Any] = collate_images,
                  finish: Callable[[Any], Any] | None = None, seed: int = 0) -> Iterator[Any]:
    """Yield `finish(collate(items))` for each index list of `batches`, in order.

    `workers` > 0 decodes in that many processes, `prefetch` batches ahead each; the dataset is
    copied into them when iteration starts (set its epoch before calling). `pin_memory` (for a
    CUDA device) lets the host-to-device copy overlap with compute. Memory: at most
    workers x prefetch batches are in flight."""
    sampler = EpochBatchSampler(list(batches))
    if len(sampler) == 0:
        return iter(())
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate,
                        pin_memory=pin_memory and torch.cuda.is_available(),
                        prefetch_factor=prefetch if workers > 0 else None,
                        generator=torch.Generator().manual_seed(seed))  # not the global RNG (module docstring)
    return _worker_errors_as_raised(loader, finish)


def _worker_errors_as_raised(loader: DataLoader, finish: Callable[[Any], Any] | None) -> Iterator[Any]:
    """A worker's ArtifactError (an unreadable image, a missing label map) reaches the job as the
    in-process one would: its own one-line message naming the file, not the worker's traceback that
    the DataLoader re-raises it with."""
    try:
        for batch in loader:
            yield finish(batch) if finish is not None else batch
    except ArtifactError as e:
        text = str(e)
        if not text.startswith("Caught ArtifactError in DataLoader worker"):
            raise
        last = [line for line in text.splitlines() if line.strip()][-1]
        raise ArtifactError(last.split("ArtifactError: ", 1)[-1]) from None


def sequential_batches(dataset: Dataset, batch_size: int, **kw) -> Iterator[Any]:
    """Every item once, in index order, in batches of `batch_size` (the last may be smaller): for
    encoding or evaluating a split. Keywords as `image_batches`."""
    n = len(dataset)  # type: ignore[arg-type]
    return image_batches(dataset, [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)], **kw)


def loader_settings(data: DataSettings, device: torch.device | str) -> dict[str, Any]:
    """`image_batches` keywords from the config's `data` section (lgvq.settings.data_settings) and the job's device."""
    return {"workers": resolve_workers(data.loader_workers), "prefetch": data.prefetch,
            "pin_memory": torch.device(device).type == "cuda"}
