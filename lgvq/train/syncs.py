"""Counting host-device synchronisations on any device, the CPU included.

On CUDA, `torch.cuda.set_sync_debug_mode("error")` finds the calls that make the host wait for the
GPU; on the CPU nothing ever waits, so a sync added to the hot path would go unnoticed by every test
that runs here. `SyncCounter` records the calls that *would* synchronise on an accelerator, whatever
the device: reading a value on the host (`item`, `bool`, `float`, `int`, `tolist`, `numpy`) and the
operations whose output size depends on the data (`nonzero`, boolean-mask indexing, `masked_select`,
`unique`, `bincount`, `repeat_interleave` without `output_size`).

It sees calls made from Python; a sync inside a C++ operator (torch.multinomial validates its input
with one, for instance) shows only on CUDA, under `set_sync_debug_mode`.

`host_side()` marks work that is on the host by design on every device (e.g. L_mtp's mask ratio,
drawn from the CPU generator): calls inside it are not counted. Neither are those inside an
optimiser's `step`: torch keeps Adam's step counters on the CPU (unless fused or capturable) precisely
so that reading them never waits for the device.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Iterator

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

_HOST_READS = {Tensor.item, Tensor.__bool__, Tensor.__float__, Tensor.__int__, Tensor.__index__, Tensor.tolist,
               Tensor.numpy}
_DATA_SIZED = {torch.nonzero, Tensor.nonzero, torch.masked_select, Tensor.masked_select, torch.unique,
               Tensor.unique, torch.bincount, Tensor.bincount, torch.argwhere, Tensor.argwhere}
_REPEAT = {torch.repeat_interleave, Tensor.repeat_interleave}
_INDEX = {Tensor.__getitem__, Tensor.__setitem__}
_host_depth = 0


@contextlib.contextmanager
def host_side() -> Iterator[None]:
    """Work that runs on the host on every device: not a sync, not counted."""
    _enter_host()
    try:
        yield
    finally:
        _leave_host()


def _enter_host() -> None:
    global _host_depth
    _host_depth += 1


def _leave_host() -> None:
    global _host_depth
    _host_depth -= 1


def _bool_index(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, Tensor) and i.dtype == torch.bool and i.dim() > 0 for i in items)


class SyncCounter(TorchFunctionMode):
    """`with SyncCounter() as c: ...` then `c.total` / `c.calls` (a Counter of the calls' names)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    def __enter__(self) -> "SyncCounter":
        from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

        self._hooks = (register_optimizer_step_pre_hook(lambda *a: _enter_host()),
                       register_optimizer_step_post_hook(lambda *a: _leave_host()))
        return super().__enter__()

    def __exit__(self, *exc) -> None:
        for h in self._hooks:
            h.remove()
        super().__exit__(*exc)

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _host_depth == 0:
            name = getattr(func, "__name__", str(func))
            if func in _HOST_READS or func in _DATA_SIZED:
                self.calls[name] += 1
            elif func in _REPEAT and kwargs.get("output_size") is None and isinstance(
                    args[1] if len(args) > 1 else kwargs.get("repeats"), Tensor):
                self.calls[name] += 1
            elif func in _INDEX and len(args) > 1 and _bool_index(args[1]):
                self.calls[f"{name}[bool mask]"] += 1
        return func(*args, **kwargs)
