"""lgvq.arrays: on-disk arrays read by rows (positional reads, never mapped) and written by rows."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from lgvq.arrays import NpyRowWriter, RowArray
from lgvq.io import ArtifactError


@pytest.fixture()
def stored(tmp_path):
    a = np.arange(7 * 3 * 2, dtype=np.int32).reshape(7, 3, 2)
    np.save(tmp_path / "a.npy", a)
    return a, RowArray.open_npy(tmp_path / "a.npy")


def test_rows_read_by_any_index_equal_numpys_indexing(stored):
    a, rows = stored
    assert rows.shape == a.shape and rows.dtype == a.dtype and len(rows) == 7
    for key in (3, -1, slice(2, 5), slice(None), slice(1, 7, 2), slice(5, 2), [4, 0, 4, 6], np.array([[1, 2], [6, 0]]),
                np.array([], dtype=np.int64), a[:, 0, 0] % 4 == 0, (slice(1, 3), 0), (2, 1)):
        np.testing.assert_array_equal(rows[key], a[key], err_msg=str(key))
    np.testing.assert_array_equal(np.asarray(rows), a)
    np.testing.assert_array_equal(np.asarray(rows, dtype=np.float32), a.astype(np.float32))


def test_out_of_range_rows_and_a_cut_file_are_errors(stored, tmp_path):
    a, rows = stored
    with pytest.raises(IndexError):
        rows[[0, 7]]
    path = tmp_path / "a.npy"
    path.write_bytes(path.read_bytes()[:-8])  # the last row lost
    with pytest.raises(ValueError, match="past the end"):
        RowArray.open_npy(path)
    cut = RowArray(path, rows.offset, rows.shape, rows.dtype)  # opened before the cut
    np.testing.assert_array_equal(cut[:6], a[:6])
    with pytest.raises(ArtifactError, match="truncated"):
        cut[6]


def test_the_file_is_never_mapped_and_a_pickled_copy_reads_on_its_own(stored, tmp_path):
    a, rows = stored
    rows[[1, 5]]
    assert str(tmp_path / "a.npy") not in Path("/proc/self/maps").read_text()
    copy = pickle.loads(pickle.dumps(rows))  # as a spawned loader worker receives it
    np.testing.assert_array_equal(copy[[6, 0]], a[[6, 0]])


def test_fortran_and_object_arrays_are_refused(tmp_path):
    np.save(tmp_path / "f.npy", np.asfortranarray(np.ones((3, 4))))
    with pytest.raises(ValueError, match="Fortran"):
        RowArray.open_npy(tmp_path / "f.npy")
    np.save(tmp_path / "o.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="objects"):
        RowArray.open_npy(tmp_path / "o.npy")


def test_the_row_writer_gives_a_plain_npy_and_refuses_a_wrong_row_count(tmp_path):
    w = NpyRowWriter(tmp_path / "w.npy", np.int16, (5, 2))
    w.append(np.ones((2, 2)))
    w.append(np.zeros((3, 2)))
    w.close()
    np.testing.assert_array_equal(np.load(tmp_path / "w.npy"), np.r_[np.ones((2, 2)), np.zeros((3, 2))].astype(np.int16))
    short = NpyRowWriter(tmp_path / "s.npy", np.int16, (5, 2))
    short.append(np.ones((4, 2)))
    with pytest.raises(ArtifactError, match="4 rows written, expected 5"):
        short.close()
    with pytest.raises(ArtifactError, match="6 rows appended"):
        NpyRowWriter(tmp_path / "o.npy", np.int16, (5, 2)).append(np.ones((6, 2)))
