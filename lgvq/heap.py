"""Give freed heap memory back to the OS while a job runs (glibc only).

Why: a long image loop (FID features, a stage-2 sampler, the extractor's training) allocates and
frees batch-sized buffers hundreds of thousands of times from several threads. glibc's malloc keeps
freed chunks in its arenas; interleaved with the few long-lived allocations, the heap cannot shrink
from the top and the job's resident memory grows with the number of batches, i.e. with the dataset,
although what is live stays a few hundred MB. Measured (benchmarks/results/heap_cpu.json): FID of
10,000 vs 10,000 64-px images peaks at 1441 MB RssAnon with plain malloc, 682 MB with a
`malloc_trim(0)` every 2 s, same FID.

`malloc_trim(0)` returns every free page of every arena (madvise), not only the top. A daemon thread
calls it every `LGVQ_MALLOC_TRIM_S` seconds (default 2; 0 turns it off), in the job's main process
(DataLoader workers are short-lived and not trimmed). Numbers never change: only where freed memory
sits. On a libc without malloc_trim (macOS, musl) this does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
import time

from lgvq.errors import ConfigError

TRIM_ENV = "LGVQ_MALLOC_TRIM_S"
DEFAULT_PERIOD_S = 2.0
MIN_PERIOD_S = 0.05  # a trim takes the allocator's locks: more often than this would stall the job

_started: tuple[int, threading.Thread] | None = None  # (pid, thread): a forked child has no thread


def trim_period(environ: dict[str, str] | os._Environ = os.environ) -> float:
    """Seconds between trims from `LGVQ_MALLOC_TRIM_S` (0 = off); a bad value is a ConfigError naming it."""
    raw = environ.get(TRIM_ENV, "").strip()
    if not raw:
        return DEFAULT_PERIOD_S
    try:
        period = float(raw)
    except ValueError:
        period = -1.0
    if not (period == 0 or MIN_PERIOD_S <= period < float("inf")):  # also refuses nan
        raise ConfigError(f"{TRIM_ENV}={raw!r}: expected seconds between heap trims, 0 (off) or a finite "
                          f"number >= {MIN_PERIOD_S}")
    return period


@functools.lru_cache(maxsize=1)
def _malloc_trim():  # glibc's malloc_trim, or None
    try:  # the process's own symbols: libc is loaded already (no library search, no subprocess)
        fn = getattr(ctypes.CDLL(None), "malloc_trim", None)
    except OSError:
        return None
    if fn is not None:
        fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


def release_freed_memory() -> bool:
    """One `malloc_trim(0)` now; False where the C library has none."""
    fn = _malloc_trim()
    if fn is None:
        return False
    fn(0)
    return True


def start_heap_trimmer(period_s: float | None = None) -> threading.Thread | None:
    """Start (once per process) the daemon thread that trims the heap every `period_s` seconds
    (default: `trim_period()`). Returns the thread, or None when off or unsupported."""
    global _started
    if _started is not None and _started[0] == os.getpid():
        return _started[1]
    period = trim_period() if period_s is None else period_s
    fn = _malloc_trim()
    if period <= 0 or fn is None:
        return None
    period = max(period, MIN_PERIOD_S)

    def loop() -> None:
        while True:
            time.sleep(period)
            fn(0)

    thread = threading.Thread(target=loop, name="lgvq-heap-trim", daemon=True)
    thread.start()
    _started = (os.getpid(), thread)
    return thread
