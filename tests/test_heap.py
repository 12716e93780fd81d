"""Freed heap memory goes back to the OS during a job (lgvq/heap.py): the RSS of a long image loop
must not grow with the number of batches because glibc keeps freed chunks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import pytest

from lgvq.config import ConfigError
from lgvq.heap import DEFAULT_PERIOD_S, TRIM_ENV, release_freed_memory, trim_period

glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or not release_freed_memory(),
                           reason="malloc_trim is glibc's")


def test_period_comes_from_the_environment_with_a_default_and_zero_for_off():
    assert trim_period({}) == DEFAULT_PERIOD_S
    assert trim_period({TRIM_ENV: "0.5"}) == 0.5
    assert trim_period({TRIM_ENV: "0"}) == 0


@pytest.mark.parametrize("bad", ["-1", "two", "nan", "inf", "0.001"])
def test_a_bad_period_is_an_error_that_names_the_variable(bad):
    with pytest.raises(ConfigError, match=TRIM_ENV):
        trim_period({TRIM_ENV: bad})


_FRAGMENT = textwrap.dedent("""
    import numpy as np
    from lgvq.heap import release_freed_memory

    def rss_anon_mb():
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon"):
                return int(line.split()[1]) // 1024

    # batch-sized buffers below the mmap threshold, each followed by a small long-lived allocation,
    # as an image loop leaves them: after the buffers are freed the heap cannot shrink from its top
    big, small = [], []
    for _ in range(3000):
        a = np.empty(64 * 1024, np.uint8); a[:] = 1; big.append(a)
        small.append(np.ones(16))
    del big
    before = rss_anon_mb()
    release_freed_memory()
    print(before, rss_anon_mb())
""")


@glibc
def test_a_trim_returns_the_freed_chunks_that_malloc_keeps():
    out = subprocess.run([sys.executable, "-c", _FRAGMENT], capture_output=True, text=True, check=True,
                         env={**os.environ, TRIM_ENV: "0"}).stdout.split()
    before, after = int(out[0]), int(out[1])
    assert before > 150, "the fragment did not keep its freed buffers (test no longer exercises malloc)"
    assert after < before - 120


@glibc
def test_one_trimmer_thread_per_process_unless_turned_off(monkeypatch):
    from lgvq import heap

    monkeypatch.setattr(heap, "_started", None)
    assert heap.start_heap_trimmer(0) is None
    t = heap.start_heap_trimmer(60)
    assert t is not None and t.daemon and t in threading.enumerate()
    assert heap.start_heap_trimmer(60) is t  # once per process
    monkeypatch.setattr(heap, "_started", (-1, t))  # as a forked child sees it: the thread is its parent's
    assert heap.start_heap_trimmer(60) is not t


def test_every_cli_command_starts_the_trimmer_before_it_runs(monkeypatch, tmp_path):
    from lgvq import cli, heap

    calls = []
    monkeypatch.setattr(heap, "start_heap_trimmer", lambda: calls.append("started"))
    assert cli.main(["plan", "estimate", "--config", str(tmp_path / "missing.yaml")]) == 2  # fails after the start
    assert calls == ["started"]
