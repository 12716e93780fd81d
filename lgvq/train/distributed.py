"""Data-parallel training across processes (torchrun), kept deliberately small.

Each process (rank) trains a full replica on its contiguous share of every global batch
(`shard`); the gradients are averaged over ranks, so every replica takes the same optimiser step
as one process on the whole batch would (for losses that are per-sample means: the contrastive
L_gsa sees only its rank's negatives, and batch statistics are per rank, as with PyTorch's DDP).

`GradientReducer` does the averaging as DDP does, without DDP's wrapper (which fits neither two
optimisers stepping on one graph, VQ-GAN's generator and discriminator, nor the adaptive GAN weight's
`autograd.grad` through the generator): gradients are flattened into ~25 MB buckets, one
`all_reduce` per bucket, launched from gradient hooks while the rest of the backward still runs.
`StateSync` broadcasts from rank 0 only the buffers a step changed (BatchNorm's running statistics),
never frozen ones (LG's token embeddings, VQCT's word embeddings, VGG). CVQ reduces its usage and its
anchors over every rank's features (`all_sum`, `global_best_rows`), so its codebook update is the same
on every rank without a broadcast. Only rank 0 writes checkpoints, logs and outputs.

Backends: NCCL when every rank on this node has its own GPU, else gloo (the CPU, what the tests use,
or more ranks than visible GPUs: NCCL refuses two ranks on one device). `torchrun --nproc_per_node N`
sets RANK / WORLD_SIZE / LOCAL_RANK; a plain process is rank 0 of 1 and nothing here runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

BUCKET_BYTES = 25 * 2**20  # DDP's default bucket size


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


def _buckets(params: Sequence[nn.Parameter], bucket_bytes: int) -> list[list[nn.Parameter]]:
    """Consecutive parameters of one dtype and device, up to `bucket_bytes` each."""
    out: list[list[nn.Parameter]] = []
    size = 0
    for p in params:
        if out and size + p.numel() * p.element_size() <= bucket_bytes and (
                out[-1][0].dtype, out[-1][0].device) == (p.dtype, p.device):
            out[-1].append(p)
            size += p.numel() * p.element_size()
        else:
            out.append([p])
            size = p.numel() * p.element_size()
    return out


def _grads(bucket: list[nn.Parameter]) -> Tensor:
    for p in bucket:  # a missing gradient counts as zero, identically on every rank
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    return torch.cat([p.grad.reshape(-1) for p in bucket])


def _write_back(bucket: list[nn.Parameter], flat: Tensor, world: int) -> None:
    flat /= world
    offset = 0
    for p in bucket:
        p.grad.copy_(flat[offset : offset + p.numel()].view_as(p.grad))
        offset += p.numel()


def average_gradients(params: Iterable[nn.Parameter], info: DistInfo, bucket_bytes: int = BUCKET_BYTES) -> None:
    """Mean of each gradient over ranks, after the backward: one all_reduce per bucket."""
    if not info.enabled:
        return
    buckets = _buckets(list(params), bucket_bytes)
    for bucket, flat, work in [(b, f, dist.all_reduce(f, async_op=True)) for b in buckets for f in [_grads(b)]]:
        work.wait()
        _write_back(bucket, flat, info.world)


class GradientReducer:
    """Averages the gradients of `params` over ranks while the backward runs.

    Buckets follow the reverse parameter order (the backward produces the last layers' gradients
    first) and are launched strictly in bucket order, so every rank issues the same collectives in
    the same order. Only the backward inside `final_backward()` launches anything: the earlier
    micro-batches of an accumulated step (and the discriminator's pass over the generator's
    parameters) just accumulate, as under DDP's `no_sync`. `finish()` launches what is left (a
    parameter without a gradient counts as zero), waits, and writes the means back into `.grad`."""

    def __init__(self, params: Iterable[nn.Parameter], info: DistInfo, bucket_bytes: int = BUCKET_BYTES) -> None:
        self.info = info
        self.buckets = _buckets([p for p in params if p.requires_grad][::-1], bucket_bytes) if info.enabled else []
        self._where = {id(p): i for i, b in enumerate(self.buckets) for p in b}
        self._armed = False
        self._ready: list[int] = []
        self._launched: list[tuple[Tensor, Any]] = []
        for bucket in self.buckets:
            for p in bucket:
                p.register_post_accumulate_grad_hook(self._on_grad)

    def final_backward(self) -> "GradientReducer":
        """`with reducer.final_backward(): loss.backward()` for the last backward before the step."""
        self._ready = [0] * len(self.buckets)
        self._launched = []
        return self

    def __enter__(self) -> None:
        self._armed = True

    def __exit__(self, *exc) -> None:
        self._armed = False

    def _on_grad(self, p: nn.Parameter) -> None:
        if not self._armed:
            return
        self._ready[self._where[id(p)]] += 1
        self._launch(complete_only=True)

    def _launch(self, complete_only: bool) -> None:
        while len(self._launched) < len(self.buckets):
            i = len(self._launched)
            if complete_only and self._ready[i] < len(self.buckets[i]):
                return
            flat = _grads(self.buckets[i])
            self._launched.append((flat, dist.all_reduce(flat, async_op=True)))

    def finish(self) -> None:
        if not self.info.enabled:
            return
        if len(self._ready) != len(self.buckets):
            self._ready = [0] * len(self.buckets)
        self._launch(complete_only=False)
        for bucket, (flat, work) in zip(self.buckets, self._launched):
            work.wait()
            _write_back(bucket, flat, self.info.world)
        self._launched, self._ready = [], []


class StateSync:
    """Broadcasts from rank 0 the buffers (and declared `nongrad_tensors()`) that changed since the
    last call: one broadcast per dtype, of everything that changed, flattened. A buffer changes by an
    in-place update (its version counter moves), by being replaced, or as the running statistics of a
    norm layer in training mode; every rank runs the same code, so every rank finds the same changes.
    Frozen buffers never change and never travel."""

    def __init__(self, modules: Iterable[nn.Module], info: DistInfo) -> None:
        self.modules, self.info = list(modules), info
        self._seen: dict[int, int] = {}
        if info.enabled:
            self._mark(self._tensors())

    def _tensors(self) -> list[Tensor]:
        seen: dict[int, Tensor] = {}
        self._running: set[int] = set()
        for module in self.modules:
            for m in module.modules():
                replicated = getattr(m, "dp_replicated", ())  # the same on every rank by construction
                # batch_norm's kernel updates the running statistics without moving their version
                # counters: a norm layer in training mode counts as changed every step.
                running = isinstance(m, nn.modules.batchnorm._NormBase) and m.training and m.track_running_stats
                for name, buf in m.named_buffers(recurse=False):
                    if name not in replicated:
                        seen.setdefault(id(buf), buf)
                        if running:
                            self._running.add(id(buf))
                for t in getattr(m, "nongrad_tensors", lambda: ())():
                    seen.setdefault(id(t), t)
        return list(seen.values())

    def _mark(self, tensors: list[Tensor]) -> None:
        self._seen = {id(t): t._version for t in tensors}

    def __call__(self) -> None:
        if not self.info.enabled:
            return
        tensors = self._tensors()
        changed = [t for t in tensors if id(t) in self._running or self._seen.get(id(t)) != t._version]
        for key in sorted({(str(t.dtype), str(t.device)) for t in changed}):
            group = [t for t in changed if (str(t.dtype), str(t.device)) == key]
            flat = torch.cat([t.reshape(-1) for t in group])
            dist.broadcast(flat, 0)
            offset = 0
            for t in group:
                t.copy_(flat[offset : offset + t.numel()].view_as(t))
                offset += t.numel()
        self._mark(tensors)


def broadcast_state(modules: Iterable[nn.Module], info: DistInfo) -> None:
    """Copy rank 0's buffers and declared non-gradient tensors to every rank (all of them: see StateSync
    for the per-step version that sends only what changed)."""
    if not info.enabled:
        return
    for module in modules:
        for buf in module.buffers():
            dist.broadcast(buf, 0)
        for m in module.modules():
            for t in getattr(m, "nongrad_tensors", lambda: ())():
                dist.broadcast(t, 0)


def data_parallel() -> bool:
    """A process group of more than one rank is running (library code reduces over it in training)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_sum(t: Tensor) -> Tensor:
    """`t` summed over ranks, in place (a no-op for one process)."""
    if data_parallel():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def global_best_rows(score: Tensor, rows: Tensor) -> Tensor:
    """Per column k, the row of the rank whose `score[k]` is largest (the lowest rank on ties, i.e. the
    first in the global batch, as argmax over one process's whole batch). score (K,), rows (K, D)."""
    if not data_parallel():
        return rows
    best = score.clone()
    dist.all_reduce(best, op=dist.ReduceOp.MAX)
    rank, world = dist.get_rank(), dist.get_world_size()
    owner = torch.where(score == best, rank, world)
    dist.all_reduce(owner, op=dist.ReduceOp.MIN)
    picked = torch.where((owner == rank)[:, None], rows, torch.zeros_like(rows))
    dist.all_reduce(picked, op=dist.ReduceOp.SUM)
    return picked


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()



def chunks_on_main(n_chunks: int, fn: Callable[[int], Any], info: DistInfo) -> Iterator[tuple[int, Any]]:
    """(c, fn(c)) for c = 0 .. n_chunks - 1, in order, on rank 0; nothing on the others, which must
    still exhaust the iterator (it runs their share and the collectives). Rank r computes the chunks c
    with c % world == r, and rank 0 gathers one round of `world` chunks at a time, so what it holds is
    one round, never a rank's whole share. One process: a plain loop."""
    if not info.enabled:
        for c in range(n_chunks):
            yield c, fn(c)
        return
    for first in range(0, n_chunks, info.world):
        c = first + info.rank
        mine = fn(c) if c < n_chunks else None
        got: list[Any] | None = [None] * info.world if info.is_main else None
        dist.gather_object(mine, got, dst=0)
        if got is not None:
            yield from enumerate(got[: min(info.world, n_chunks - first)], start=first)


def map_chunks_to_main(n_chunks: int, fn: Callable[[int], Any], info: DistInfo) -> list[Any] | None:
    """[fn(0), .., fn(n_chunks - 1)] on rank 0, None on the others (`chunks_on_main`, collected)."""
    out = [x for _, x in chunks_on_main(n_chunks, fn, info)]
    return out if info.is_main else None
