"""On-disk arrays read and written a batch of rows at a time, never held or mapped whole.

- `NpyRowWriter`: a .npy file of known shape, filled by appending rows (plain writes).
- `RowArray`: the rows of a C-ordered array stored in a file (a .npy, or a stored member of an
  uncompressed .npz) read with positional reads into fresh arrays.

Why not `np.load(mmap_mode="r")`: every page a memory-mapped array has touched stays in the
process's resident set (RssFile) until the kernel needs the memory back. A job that reads its
batches from a COCO-sized text cache (19 GB) or code file ends with most of the file counted as
its own memory, which is what a cluster's memory accounting and `peak RSS` see. Positional reads
go through the page cache the same way but leave nothing resident in the process: what a batch
reads is freed with the batch. The cost is one `pread` per run of consecutive rows.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from lgvq.io import ArtifactError


class NpyRowWriter:
    """A .npy file of known shape filled by appending rows: plain writes, so a batch, not the
    file, is resident (a writable memmap would keep every page it touched in the RSS)."""

    def __init__(self, path: Path, dtype: Any, shape: tuple[int, ...]) -> None:
        self.path, self.dtype, self.shape, self.rows = Path(path), np.dtype(dtype), tuple(shape), 0
        self.fh = open(path, "wb")
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        np.lib.format.write_array_header_2_0(self.fh, header)

    def append(self, rows: np.ndarray) -> None:
        if self.rows + len(rows) > self.shape[0]:
            raise ArtifactError(f"{self.path}: {self.rows + len(rows)} rows appended, the file holds {self.shape[0]}")
        self.fh.write(np.ascontiguousarray(rows, dtype=self.dtype).tobytes())
        self.rows += len(rows)

    def close(self) -> None:
        self.fh.close()
        if self.rows != self.shape[0]:
            raise ArtifactError(f"{self.path}: {self.rows} rows written, expected {self.shape[0]}")


def npy_header(fh, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran order, dtype) of the .npy header at `fh`'s position; leaves `fh` at the data."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fh)
    raise ValueError(f"{where}: unsupported .npy format version {version}")


class RowArray:
    """Rows of a C-ordered array at byte `offset` of `path`, read on indexing (int, slice, or an
    integer array: the result is a new ndarray, in the order asked, duplicates allowed).
    `np.asarray(rows)` reads the whole array: only for arrays whose size does not grow with the data."""

    def __init__(self, path: str | os.PathLike, offset: int, shape: tuple[int, ...], dtype: Any) -> None:
        self.path, self.offset = Path(path), int(offset)
        self.shape, self.dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        if not self.shape:
            raise ValueError(f"{self.path}: a 0-d array has no rows")
        self.row_shape = self.shape[1:]
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self._fd: int | None = None

    @classmethod
    def open_npy(cls, path: str | os.PathLike) -> "RowArray":
        """The array of a .npy file (its header checked; a Fortran-ordered or object array is refused)."""
        p = Path(path)
        with open(p, "rb") as fh:
            shape, fortran, dtype = npy_header(fh, str(p))
            offset = fh.tell()
        return cls.checked(p, offset, shape, fortran, dtype, p.stat().st_size, str(p))

    @classmethod
    def checked(cls, path: Path, offset: int, shape, fortran: bool, dtype: np.dtype, file_size: int,
                where: str) -> "RowArray":
        if dtype.hasobject:
            raise ValueError(f"{where} holds Python objects")
        if fortran and len(shape) > 1:
            raise ValueError(f"{where} is stored in Fortran order; rows cannot be read one by one")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if offset + nbytes > file_size:
            raise ValueError(f"{where} ends past the end of the file ({offset + nbytes} > {file_size} bytes)")
        return cls(path, offset, shape, dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"RowArray({self.path}, shape={self.shape}, dtype={self.dtype})"

    # A forked DataLoader worker may share the descriptor (pread does not move a file offset); a
    # spawned one or a pickled copy opens its own.
    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None}

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass

    def _descriptor(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        return self._fd

    def _read_into(self, out: np.ndarray, first_row: int) -> None:
        """Fill `out` (contiguous, len(out) rows) from row `first_row` on."""
        view = memoryview(out.reshape(-1).view(np.uint8))
        pos, done = self.offset + first_row * self.row_bytes, 0
        while done < len(view):
            n = os.preadv(self._descriptor(), [view[done:]], pos + done)
            if n <= 0:
                raise ArtifactError(f"{self.path}: truncated (rows from {first_row} past the end of the file)")
            done += n

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows start:stop (clipped to the array), one read."""
        start, stop = max(0, start), min(len(self), stop)
        out = np.empty((max(0, stop - start), *self.row_shape), dtype=self.dtype)
        if len(out) and self.row_bytes:
            self._read_into(out, start)
        return out

    def take(self, rows: Any) -> np.ndarray:
        """The rows `rows` (integers, any order, repeats allowed): one read per run of consecutive rows."""
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        n = len(self)
        if len(idx) and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"{self.path}: row out of range for {n} rows")
        idx = np.where(idx < 0, idx + n, idx)
        unique, inverse = np.unique(idx, return_inverse=True)
        got = np.empty((len(unique), *self.row_shape), dtype=self.dtype)
        if self.row_bytes and len(unique):
            starts = np.flatnonzero(np.diff(unique, prepend=-2) != 1)  # where a run of consecutive rows begins
            ends = np.append(starts[1:], len(unique))
            view, rb, fd = memoryview(got.reshape(-1).view(np.uint8)), self.row_bytes, self._descriptor()
            for a, b, row in zip(starts.tolist(), ends.tolist(), unique[starts].tolist()):  # plain ints: a hot loop
                chunk = view[a * rb : b * rb]
                if os.preadv(fd, [chunk], self.offset + row * rb) != len(chunk):
                    self._read_into(got[a:b], row)  # a short read: finish it, or say where the file is cut
        return got[inverse.reshape(-1)]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, tuple):  # rows first, then numpy indexing of what was read
            return self[key[0]][(slice(None), *key[1:])] if not np.isscalar(key[0]) else self[key[0]][key[1:]]
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step == 1:
                return self.read(start, stop)
            return self.take(np.arange(start, stop, step))
        if isinstance(key, (int, np.integer)):
            return self.take([int(key)])[0]
        idx = np.asarray(key)
        if idx.dtype == np.bool_:
            idx = np.flatnonzero(idx)
        return self.take(idx).reshape(*idx.shape, *self.row_shape)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self.read(0, len(self))
        return whole if dtype is None else whole.astype(dtype, copy=False)
