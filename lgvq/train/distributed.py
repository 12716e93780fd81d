"""Data-parallel training across processes (torchrun), kept deliberately small.

Each process (rank) trains a full replica on its contiguous share of every global batch
(`shard`); after the backward pass the gradients are averaged over ranks (`average_gradients`),
so every replica takes the same optimiser step as one process on the whole batch would (for
losses that are per-sample means: the contrastive L_gsa sees only its rank's negatives, and
batch statistics are per rank, as with PyTorch's DDP). State that changes outside autograd —
buffers, and tensors a module declares through `nongrad_tensors()` (CVQ's codebook
re-initialisation) — is broadcast from rank 0 after each step, so replicas never drift.
Only rank 0 writes checkpoints, logs and outputs.

Backends: NCCL when every rank on this node has its own GPU, else gloo (the CPU, what the tests use,
or more ranks than visible GPUs: NCCL refuses two ranks on one device). `torchrun --nproc_per_node N`
sets RANK / WORLD_SIZE / LOCAL_RANK; a plain process is rank 0 of 1 and nothing here runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable

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
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        backend = choose_backend(gpus, local_world)
        if gpus:
            torch.cuda.set_device(rank_device_index(info.local_rank, gpus))
        dist.init_process_group(backend)
    return info


def choose_backend(visible_gpus: int, local_world: int) -> str:
    """NCCL only when each of this node's `local_world` ranks has a GPU of its own."""
    return "nccl" if visible_gpus >= local_world > 0 else "gloo"


def rank_device_index(local_rank: int, visible_gpus: int) -> int:
    """The GPU a rank uses: its own when there are enough, else shared round-robin (under gloo)."""
    return local_rank % visible_gpus


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
