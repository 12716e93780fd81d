"""The embedded dataset: deterministic, in real formats, consistent with its ground truth."""

from __future__ import annotations

import filecmp
import pickle
from pathlib import Path

import pytest

from lgvq.data import formats
from lgvq.data.attributes import ATTRIBUTE_NAMES, attribute_vector, caption_attribute_vector
from lgvq.data.dataset import ImageTextDataset
from lgvq.data.packed import PackedRecords
from lgvq.data.registry import get_source, list_datasets
from lgvq.data.stats import dataset_statistics
from lgvq.data.synth import SYNONYMS, generate
from lgvq.io import ArtifactError


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("d") / "shapes", n=40, size=32, seed=3)


def all_files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_same_arguments_give_byte_identical_files(shapes, tmp_path):
    again = generate(tmp_path / "again", n=40, size=32, seed=3)
    assert all_files(shapes) == all_files(again)
    _, mismatch, errors = filecmp.cmpfiles(shapes, again, [str(p) for p in all_files(shapes)], shallow=False)
    assert not mismatch and not errors
    other = generate(tmp_path / "other", n=40, size=32, seed=4)
    assert (other / "annotations/captions_train.json").read_bytes() != (shapes / "annotations/captions_train.json").read_bytes()


def test_layout_is_the_real_formats(shapes):
    src = get_source("shapes", shapes)
    assert "shapes" in list_datasets()
    counts = {s: len(src.records(s)) for s in src.splits()}
    assert counts == {"train": 32, "val": 4, "test": 4}
    rec = src.records("train")[0]
    assert rec.path.name == f"{rec.image_id:012d}.png" and rec.path.is_file()
    assert len(rec.captions) >= 5 and rec.mask_path is not None
    assert formats.read_label_map(rec.mask_path).max() >= 1


def test_captions_and_answers_agree_with_ground_truth(shapes):
    src = get_source("shapes", shapes)
    for rec in src.records("train"):
        objs = rec.attributes["objects"]
        for cap in rec.captions:
            for o in objs:
                assert o["colour"] in cap and any(w in cap for w in SYNONYMS[o["shape"]]), (cap, o)
    by_id = {r.image_id: r.attributes["objects"] for r in src.records("train")}
    qa = src.qa("train")
    assert {q.qtype for q in qa} == {0, 1, 2, 3}
    for q in qa:
        objs = by_id[q.image_id]
        if q.qtype == 1:
            assert q.answer == ["one", "two", "three"][len(objs) - 1]
        if q.qtype == 2:
            shape = q.question.split("of the ")[1].rstrip(" ?")
            assert q.answer == next(o["colour"] for o in objs if o["shape"] == shape)
        assert len(q.answer.split()) == 1


def test_referring_expressions_point_at_their_object(shapes):
    src = get_source("shapes", shapes)
    by_id = {r.image_id: r.attributes["objects"] for s in src.splits() for r in src.records(s)}
    refs = src.refs("test")
    assert refs
    for r in refs:
        target = next(o for o in by_id[r.image_id] if list(r.bbox_xywh) == [float(v) for v in o["bbox"]])
        assert target["colour"] in r.sentence


def test_format_round_trips(tmp_path):
    images = [{"id": 7, "file_name": "000000000007.png", "width": 8, "height": 8}]
    anns = [{"id": 1, "image_id": 7, "caption": "a red disc"}, {"id": 2, "image_id": 7, "caption": "a red circle"}]
    formats.write_coco_captions(tmp_path / "c.json", images, anns)
    ims, caps = formats.read_coco_captions(tmp_path / "c.json")
    assert ims[7]["file_name"] == "000000000007.png" and caps[7] == ["a red disc", "a red circle"]
    rows = [("what is it ?", "circle", 7, 0), ("how many ?", "two", 7, 1)]
    formats.write_cocoqa(tmp_path / "qa", rows)
    assert formats.read_cocoqa(tmp_path / "qa") == rows
    refs = [{"ref_id": 1, "ann_id": 2, "image_id": 7, "split": "test", "sentences": [{"sent": "the disc"}]}]
    formats.write_refs(tmp_path / "refs.p", refs)
    assert formats.read_refs(tmp_path / "refs.p") == refs


def test_referring_expressions_of_every_split_come_from_one_parse_and_keep_only_what_a_record_needs_packed(tmp_path):
    refs = [{"ref_id": 1, "ann_id": 2, "image_id": 7, "split": "test", "tokens": ["x"],
             "sentences": [{"sent": "the disc", "tokens": ["the", "disc"]}, {"sent": "red one"}]},
            {"ref_id": 3, "ann_id": 4, "image_id": 8, "split": "train", "sentences": [{"sent": "left square"}]}]
    formats.write_refs(tmp_path / "refs.p", refs)
    images = [{"id": 7, "file_name": "a.png", "width": 8, "height": 8}, {"id": 8, "file_name": "b.png", "width": 8, "height": 8}]
    anns = [{"id": 2, "image_id": 7, "bbox": [1, 2, 3, 4]}, {"id": 4, "image_id": 8, "bbox": [0, 0, 5.5, 2]},
            {"id": 9, "image_id": 8, "bbox": [0, 0, 1, 1]}]  # an object no expression refers to
    formats.write_coco_instances(tmp_path / "instances.json", images, anns, [])
    by_split = formats.read_ref_records(tmp_path / "refs.p", tmp_path / "instances.json")
    assert sorted(by_split) == ["test", "train"]
    assert [(r.ref_id, r.image_id, r.sentence, r.bbox_xywh) for r in by_split["test"]] == \
        [(1, 7, "the disc", (1.0, 2.0, 3.0, 4.0)), (1, 7, "red one", (1.0, 2.0, 3.0, 4.0))]
    assert all(isinstance(v, PackedRecords) for v in by_split.values())  # one buffer a split, not objects
    assert by_split["train"][0].bbox_xywh == (0.0, 0.0, 5.5, 2.0)
    assert by_split["test"][0].image_wh == (8, 8)  # the frame of the box: the image's instances.json entry
    formats.write_coco_instances(tmp_path / "instances.json", [{"id": 7, "file_name": "a.png"}], anns, [])
    assert formats.read_ref_records(tmp_path / "refs.p", tmp_path / "instances.json")["test"][0].image_wh is None
    formats.write_coco_instances(tmp_path / "instances.json", images, anns[:1], [])
    with pytest.raises(ArtifactError, match=r"object 4 is not in .*instances.json"):
        formats.read_ref_records(tmp_path / "refs.p", tmp_path / "instances.json")


def test_cocoqa_files_of_different_length_are_refused(tmp_path):
    formats.write_cocoqa(tmp_path, [("q ?", "a", 1, 0)])
    (tmp_path / "answers.txt").write_text("a\nb\n")
    with pytest.raises(ArtifactError, match="different line counts"):
        formats.read_cocoqa(tmp_path)


def test_a_pickle_carrying_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    (tmp_path / "refs.p").write_bytes(pickle.dumps([Evil()]))
    with pytest.raises(ArtifactError, match="refusing to load"):
        formats.read_refs(tmp_path / "refs.p")


def test_dataset_items_and_broken_inputs(shapes, tmp_path):
    recs = get_source("shapes", shapes).records("train")
    ds = ImageTextDataset(recs, image_size=16, train=True, resize_mode="resize_crop", seed=0, load_masks=True)
    item = ds[0]
    assert item["image"].shape == (3, 16, 16) and -1 <= item["image"].min() and item["image"].max() <= 1
    assert item["mask"].shape == (16, 16) and item["caption"] in item["captions"]
    ds.set_epoch(0)
    assert ds[3]["caption"] == ds[3]["caption"]  # same epoch, same caption: resumable
    with pytest.raises(ArtifactError, match="empty split"):
        ImageTextDataset([], image_size=16, train=False)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    bad = type(recs[0])(1, broken, ("a caption",))
    with pytest.raises(ArtifactError, match="broken.png"):
        ImageTextDataset([bad], image_size=16, train=False)[0]
    with pytest.raises(ArtifactError, match="no captions"):
        ImageTextDataset([type(recs[0])(1, recs[0].path, ())], image_size=16, train=False)


def test_image_without_captions_in_the_json_names_the_file(shapes, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(shapes, copy)
    cap = copy / "annotations/captions_val.json"
    ims, caps = formats.read_coco_captions(cap)
    first = next(iter(ims))
    data = __import__("json").loads(cap.read_text())
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != first]
    cap.write_text(__import__("json").dumps(data))
    with pytest.raises(ArtifactError, match="captions_val.json"):
        get_source("shapes", copy).records("val")


def test_attribute_vectors(shapes):
    rec = get_source("shapes", shapes).records("test")[0]
    v = attribute_vector(rec.attributes["objects"])
    assert v.shape == (len(ATTRIBUTE_NAMES),) and v[-3:].sum() == 1
    c = caption_attribute_vector(rec.captions[0])
    assert (c[:-3] == v[:-3]).all()  # the caption names exactly the shapes and colours present


def test_statistics(shapes):
    stats = dataset_statistics(get_source("shapes", shapes))
    assert stats["train"]["images"] == 32 and stats["train"]["captions_per_image_min"] == 5
    assert stats["train"]["vocabulary"] > 20 and stats["test"]["boxes_per_image"] > 0


def test_atomic_writes_get_the_umask_mode_not_mkstemps_0600(tmp_path):
    import os

    from lgvq.io import atomic_write_json

    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "x.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o644
