"""A split's records as one byte buffer, for datasets that DataLoader workers read.

Why: a list of Python records in a Dataset is copied into every worker's memory, piece by piece:
workers are forked, and merely reading a record writes its reference count, which copies the page
it sits on (pytorch/pytorch#13246). At MS-COCO's size (~83k train records of a path and five
captions, ~1.3 KB each as objects) that is ~100 MB more per worker, per rank, per epoch's fresh
workers. `PackedRecords` pickles each record once into a single numpy byte array with an offset
table: two objects whatever the split's size, never written after construction, so forked workers
share its pages; a record is unpickled on access (~20 us, beside a ~ms image decode).
Measured in benchmarks/bench_records.py (what a worker copies; a source that caches its list of records
still holds that list in the job's own process).
"""

from __future__ import annotations

import operator
import pickle
from collections.abc import Sequence
from typing import Iterable, Iterator, TypeVar, overload

import numpy as np

T = TypeVar("T")


class PackedRecords(Sequence[T]):
    """Read-only sequence of picklable records (e.g. `ImageRecord`) stored as pickled bytes."""

    def __init__(self, items: Iterable[T]) -> None:
        buf = bytearray()
        ends = []
        for item in items:
            buf += pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
            ends.append(len(buf))
        self._bytes = np.frombuffer(buf, dtype=np.uint8)  # a view: no second copy of the buffer
        self._bytes.flags.writeable = False
        self._ends = np.asarray(ends, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._ends)

    def _one(self, i: int) -> T:
        start = int(self._ends[i - 1]) if i > 0 else 0
        return pickle.loads(self._bytes[start : int(self._ends[i])].tobytes())

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> list[T]: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._one(i) for i in range(*index.indices(len(self)))]
        i = operator.index(index)  # an int, not a float
        if not -len(self) <= i < len(self):
            raise IndexError(f"record {index} of {len(self)}")
        return self._one(i % len(self))

    def __iter__(self) -> Iterator[T]:
        return (self._one(i) for i in range(len(self)))

    @property
    def nbytes(self) -> int:
        return int(self._bytes.nbytes + self._ends.nbytes)
