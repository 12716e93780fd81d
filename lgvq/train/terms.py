"""Loss terms between log points, kept on the device: one host-device sync per log window.

A task's `train_step` returns its terms as detached scalar tensors (Python floats are accepted too).
Reading a CUDA tensor on the host (`float(v)`, `bool(torch.isfinite(v))`) waits for the whole queue of
launched kernels, so doing it every step stops the host from running ahead of the GPU (the pinned,
non-blocking batch copy then overlaps nothing). `TermWindow` instead records, on the device, the last
value of each term and the first step at which it was NaN/inf; `flush` reads everything back in one
transfer at the log point (and before every checkpoint, so a non-finite state is never saved).

What the log holds: the value of each term at the log step itself (the last value of the window), as
before this module existed, so `log.csv` is unchanged and a resumed run logs what an uninterrupted one
does. A NaN/inf anywhere in the window still stops the run, naming the term and its first bad step;
the optimiser has by then taken the steps up to the log point (at most `log_every` of them), but the
run stops before any checkpoint is written.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import Tensor


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or inf; the message names the step and the term."""


class TermWindow:
    def __init__(self) -> None:
        # One span per run of steps with the same term names (e.g. "gan"/"disc" join at disc_start).
        self._spans: list[tuple[tuple[str, ...], Tensor, Tensor]] = []  # names, first bad step, value there
        self._last: dict[str, Tensor | float] = {}
        self._first_step: int | None = None
        self._last_step = -1

    def add(self, terms: Mapping[str, Tensor | float], step: int) -> None:
        """Record one step's terms; no host-device synchronisation."""
        if self._first_step is None:
            self._first_step = step
        self._last_step = step
        self._last = {}
        tensors: dict[str, Tensor] = {}
        for name, value in terms.items():
            if isinstance(value, Tensor):
                tensors[name] = value.detach().float().mean()  # a non-scalar term is non-finite iff its mean is
                self._last[name] = tensors[name]
            else:
                if not math.isfinite(float(value)):
                    raise NonFiniteLossError(f"non-finite loss at step {step}: term '{name}' = {float(value)}")
                self._last[name] = float(value)
        if not tensors:
            return
        names = tuple(tensors)
        device = next(iter(tensors.values())).device
        values = torch.stack([v.to(device) for v in tensors.values()])
        if not self._spans or self._spans[-1][0] != names:
            self._spans.append((names, torch.full((len(names),), -1, dtype=torch.long, device=device),
                                torch.zeros(len(names), device=device)))
        _, first, at = self._spans[-1]
        new = ~torch.isfinite(values) & (first < 0)
        first.copy_(torch.where(new, step, first))
        at.copy_(torch.where(new, values, at))

    def flush(self) -> dict[str, float]:
        """The last step's terms as floats (one transfer); raise NonFiniteLossError if any step of the
        window had a NaN/inf term. Starts a new window."""
        pending = [t for _, first, at in self._spans for t in (first.double(), at.double())]
        pending += [v.double().reshape(1) for v in self._last.values() if isinstance(v, Tensor)]
        host = torch.cat([p.to(pending[0].device) for p in pending]).tolist() if pending else []
        window = (self._first_step, self._last_step)
        spans, last = self._spans, self._last
        self._spans, self._first_step = [], None
        pos, bad = 0, []
        for names, first, _ in spans:
            k = len(names)
            steps, values = host[pos : pos + k], host[pos + k : pos + 2 * k]
            bad += [(int(s), n, v) for n, s, v in zip(names, steps, values) if s >= 0]
            pos += 2 * k
        if bad:
            step, name, value = min(bad)
            raise NonFiniteLossError(f"non-finite loss at step {step}: term '{name}' = {value} (checked once per "
                                     f"log window: steps {window[0]}-{window[1]})")
        out: dict[str, float] = {}
        for name, value in last.items():
            if isinstance(value, Tensor):
                out[name] = host[pos]
                pos += 1
            else:
                out[name] = value
        return out
