"""PackedRecords (lgvq/data/packed.py): a split's records in one buffer read back exactly as given."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from lgvq.data.base import ImageRecord
from lgvq.data.dataset import ImageTextDataset
from lgvq.data.packed import PackedRecords


def _records(n=7):
    return [ImageRecord(i, Path(f"/d/img/{i:06d}.png"), (f"caption {i}", "a second one"),
                        mask_path=Path(f"/d/m/{i}.png") if i % 2 else None,
                        attributes={"objects": [{"colour": "red", "bbox": [i, 1, 2, 3]}]} if i % 3 else None)
            for i in range(n)]


def test_every_record_reads_back_equal_by_index_slice_and_iteration():
    recs = _records()
    packed = PackedRecords(recs)
    assert len(packed) == len(recs)
    assert [packed[i] for i in range(len(recs))] == recs
    assert list(packed) == recs
    assert packed[2:5] == recs[2:5] and packed[::3] == recs[::3]
    assert packed[-1] == recs[-1]


def test_an_index_past_either_end_is_an_index_error_and_a_float_is_no_index():
    packed = PackedRecords(_records(3))
    for bad in (3, -4):
        with pytest.raises(IndexError):
            packed[bad]
    with pytest.raises(TypeError):
        packed[1.0]


def test_it_is_a_sequence_like_the_list_it_replaces():
    from collections.abc import Sequence

    recs = _records(4)
    packed = PackedRecords(recs)
    assert isinstance(packed, Sequence)
    assert recs[2] in packed and packed.index(recs[2]) == 2 and list(reversed(packed)) == recs[::-1]


def test_the_store_is_two_arrays_whatever_the_number_of_records():
    packed = PackedRecords(_records(50))
    assert set(vars(packed)) == {"_bytes", "_ends"}
    assert packed.nbytes == sum(len(pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL)) for r in _records(50)) + 50 * 8
    assert not packed._bytes.flags.writeable  # nothing writes it after construction: forked workers share its pages


def test_an_empty_split_is_an_empty_sequence():
    assert len(PackedRecords([])) == 0 and list(PackedRecords([])) == []


def test_the_dataset_reads_its_records_from_one_packed_buffer():
    ds = ImageTextDataset(_records(4), image_size=8, train=False)
    assert isinstance(ds.records, PackedRecords) and ds.records[3] == _records(4)[3]
