"""Annotation files written one record at a time (lgvq.data.spool): the parsed files equal what
writing the whole Python objects gives, nothing is held back in memory, and a failed generation
leaves neither a partial file nor a spool behind."""

from __future__ import annotations

import json
import pickle

import pytest

from lgvq.data import formats, synth
from lgvq.data.spool import JsonSpool, PickleListSpool, write_json_members, write_pickled_list


def test_spooled_members_parse_to_the_objects_they_were_given(tmp_path):
    images = [{"id": i, "file_name": f"{i:012d}.png", "size": [i, 2 * i]} for i in range(5)]
    anns = [{"id": k, "caption": f"a caption with \"quotes\" and é {k}"} for k in range(7)]
    spools = {name: JsonSpool(tmp_path, "array") for name in ("images", "annotations", "empty")}
    for im in images:
        spools["images"].append(im)
    for a in anns:
        spools["annotations"].append(a)
    plain = {"info": {"description": "lgvq"}, "licenses": [], "categories": [{"id": 1, "name": "circle"}]}
    write_json_members(tmp_path / "out.json", {**plain, **spools})
    got = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert got == {**plain, "images": images, "annotations": anns, "empty": []}
    assert list(got) == sorted(got)  # members in sorted order, as atomic_write_json writes them
    assert len(spools["images"]) == 5 and len(spools["empty"]) == 0


def test_an_object_spool_is_a_whole_file_and_items_are_serialized_when_added(tmp_path):
    attrs = JsonSpool(tmp_path, "object")
    record = {"objects": [{"shape": "circle"}], "word": None}
    attrs.put("12", record)
    record["objects"].append({"shape": "square"})  # a later change is not in the file: nothing is held
    attrs.put("3", {"objects": [], "word": "stop"})
    write_json_members(tmp_path / "attributes.json", attrs)
    assert json.loads((tmp_path / "attributes.json").read_text()) == {
        "12": {"objects": [{"shape": "circle"}], "word": None}, "3": {"objects": [], "word": "stop"}}
    empty = JsonSpool(tmp_path, "object")
    write_json_members(tmp_path / "empty.json", empty)
    assert json.loads((tmp_path / "empty.json").read_text()) == {}


def test_spool_kinds_are_not_mixed(tmp_path):
    with pytest.raises(TypeError, match="array spools"):
        JsonSpool(tmp_path, "object").append(1)
    with pytest.raises(TypeError, match="object spools"):
        JsonSpool(tmp_path, "array").put("k", 1)
    with pytest.raises(TypeError, match="keys are strings"):
        JsonSpool(tmp_path, "object").put(3, 1)


@pytest.mark.parametrize("n", [0, 1, 999, 1000, 2503])
def test_a_pickled_list_spool_loads_as_the_list_across_batch_boundaries(tmp_path, n):
    refs = [{"ref_id": i, "split": "train" if i % 3 else "test", "sentences": [{"sent": "the red disc", "tokens": ["the", "red", "disc"]}] * 2}
            for i in range(n)]
    spool = PickleListSpool(tmp_path)
    for r in refs:
        spool.append(r)
    write_pickled_list(tmp_path / "refs(umd).p", spool)
    assert formats.read_refs(tmp_path / "refs(umd).p") == refs  # the restricted unpickler accepts it
    assert pickle.loads((tmp_path / "refs(umd).p").read_bytes()) == refs


def test_a_failed_generation_leaves_no_annotation_file_and_no_spool(tmp_path, monkeypatch):
    real_render = synth.render
    calls = []

    def render_then_fail(*args, **kwargs):
        calls.append(1)
        if len(calls) == 25:
            raise RuntimeError("disk full")
        return real_render(*args, **kwargs)

    monkeypatch.setattr(synth, "render", render_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        synth.generate(tmp_path / "shapes", n=40, size=32, seed=0)
    out = tmp_path / "shapes"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # the spool folder is gone
    assert not (out / "annotations").exists() and not (out / "dataset.json").exists()
