"""Data-parallel training across processes (torchrun), kept deliberately small.

Each process (rank) trains a full replica on its contiguous share of every global batch
(`shard`); after the backward pass the gradients are averaged over ranks (`average_gradients`),
so every replica takes the same optimiser step as one process on the whole batch would (for
losses that are per-sample means: the contrastive L_gsa sees only its rank's negatives, and
batch statistics are per rank, as with PyTorch's DDP). State that changes outside autograd —
buffers, and tensors a module declares through `nongrad_tensors()` (CVQ's codebook
re-initialisation) — is broadcast from rank 0 after each step, so replicas never drift.
Only rank 0 writes checkpoints, logs and outputs.

Backends: NCCL on CUDA, gloo on the CPU (what the tests use). `torchrun --nproc_per_node N`
sets RANK / WORLD_SIZE / LOCAL_RANK; a plain process is rank 0 of 1 and nothing here runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistInfo()


def init_from_env() -> DistInfo:
    """Join the process group torchrun describes in the environment (no-op for one process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group("nccl" if cuda else "gloo")
    return info


def shard(batch: Any, info: DistInfo, *, what: str = "train.batch_size") -> Any:
    """This rank's contiguous share of a global batch (tensors, TextFeatures-like dataclasses,
    lists and dicts of them, split along dim 0). The batch must divide evenly over ranks."""
    if not info.enabled:
        return batch
    if isinstance(batch, dict):
        return {k: shard(v, info, what=what) for k, v in batch.items()}
    if isinstance(batch, (torch.Tensor, list, tuple)):
        n = len(batch)
        if n % info.world:
            raise ValueError(f"{what}: a batch of {n} does not split evenly over {info.world} processes")
        k = n // info.world
        return batch[info.rank * k : (info.rank + 1) * k]
    if hasattr(batch, "__getitem__") and hasattr(batch, "token_ids"):  # TextFeatures
        return batch[_slice(len(batch.token_ids), info, what)]
    return batch


def _slice(n: int, info: DistInfo, what: str) -> slice:
    if n % info.world:
        raise ValueError(f"{what}: a batch of {n} does not split evenly over {info.world} processes")
    k = n // info.world
    return slice(info.rank * k, (info.rank + 1) * k)


def average_gradients(params: Iterable[nn.Parameter], info: DistInfo) -> None:
    """Mean of each gradient over ranks (a missing gradient counts as zero, identically on every rank)."""
    if not info.enabled:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad /= info.world


def broadcast_state(modules: Iterable[nn.Module], info: DistInfo) -> None:
    """Copy rank 0's buffers and declared non-gradient tensors to every rank."""
    if not info.enabled:
        return
    for module in modules:
        for buf in module.buffers():
            dist.broadcast(buf, 0)
        for m in module.modules():
            for t in getattr(m, "nongrad_tensors", lambda: ())():
                dist.broadcast(t, 0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()



def map_chunks_to_main(n_chunks: int, fn: Callable[[int], Any], info: DistInfo) -> list[Any] | None:
    """[fn(0), .., fn(n_chunks - 1)] on rank 0, None on the others: rank r computes the chunks c with
    c % world == r, and rank 0 gathers one round of `world` chunks at a time (what it holds grows by
    one round, never by a rank's whole share before it writes). One process: a plain loop."""
    if not info.enabled:
        return [fn(c) for c in range(n_chunks)]
    out: list[Any] | None = [] if info.is_main else None
    for first in range(0, n_chunks, info.world):
        c = first + info.rank
        mine = fn(c) if c < n_chunks else None
        got: list[Any] | None = [None] * info.world if info.is_main else None
        dist.gather_object(mine, got, dst=0)
        if out is not None:
            out.extend(got[: min(info.world, n_chunks - first)])
    return out
