"""Real-dataset adapters on tiny fixtures written in each dataset's official on-disk layout."""

from __future__ import annotations

import collections
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lgvq.cli import main
from lgvq.data.check import check_dataset
from lgvq.data.dataset import ImageTextDataset, load_rgb
from lgvq.data.formats import read_label_map
from lgvq.data.registry import get_source, list_datasets
from lgvq.data.sources.celeba import CELEBAMASK_PARTS
from lgvq.data.sources.real import keep_caption
from lgvq.data.sources.textcaps import textcaps_int_id
from lgvq.io import ArtifactError

LONG = " ".join(["word"] * 28)  # 28 words + 2 >= 30: the authors' loaders drop it


# --- fixture writers ------------------------------------------------------------------------------

def jpeg(path: Path, seed: int, size: tuple[int, int] = (24, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, format="JPEG")
    return path


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def text(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{ln}\n" for ln in lines), encoding="utf-8")


def py2_pickle(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))  # the official lists/refs were written by Python 2


CUB_IMAGES = {  # CUB's 1-based ids, numbered class folders
    1: "001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg",
    2: "001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg",
    3: "002.Laysan_Albatross/Laysan_Albatross_0002_1027.jpg",
    4: "002.Laysan_Albatross/Laysan_Albatross_0081_1017.jpg",
}
CUB_TRAIN = {1: "1", 2: "0", 3: "1", 4: "0"}


def cub_caption(iid: int, k: int) -> str:
    return f"bird {iid} caption {k} has a white belly"


def make_cub(root: Path, *, text_name: str = "text_c10", inside: bool = False) -> Path:
    """root/CUB_200_2011/... (official tgz) and root/text_c10/ (Reed et al.'s cvpr2016_cub)."""
    cub = root / "CUB_200_2011"
    text(cub / "images.txt", [f"{i} {rel}" for i, rel in CUB_IMAGES.items()])
    text(cub / "train_test_split.txt", [f"{i} {f}" for i, f in CUB_TRAIN.items()])
    text(cub / "bounding_boxes.txt", [f"{i} {10.0 * i} 27.0 325.0 304.0" for i in CUB_IMAGES])
    text(cub / "classes.txt", ["1 001.Black_footed_Albatross", "2 002.Laysan_Albatross"])
    text(cub / "image_class_labels.txt", [f"{i} {1 + (i > 2)}" for i in CUB_IMAGES])
    for i, rel in CUB_IMAGES.items():
        jpeg(cub / "images" / rel, i)
        lines = [cub_caption(i, k) for k in range(10)]
        if i == 1:
            lines[9] = LONG
        text((cub if inside else root) / text_name / Path(rel).with_suffix(".txt"), lines)
    return root


CELEBA_SPLITS = {"train": ["0", "2500"], "test": ["1"]}


def make_mmceleba(root: Path, *, lists: str = "pickle", unzipped: bool = False) -> Path:
    """MM-CelebA-HQ (CelebA-HQ-img, celeba-caption, train|test/filenames.pickle) + CelebAMask-HQ parts.
    unzipped: images and parts where `CelebAMask-HQ.zip` puts them, under root/CelebAMask-HQ/."""
    zipped = root / "CelebAMask-HQ" if unzipped else root
    for names in CELEBA_SPLITS.values():
        for n in names:
            jpeg(zipped / "CelebA-HQ-img" / f"{n}.jpg", int(n), size=(16, 16))
            text(root / "celeba-caption" / f"{n}.txt", [f"face {n} caption {k} smiling" for k in range(10)])
    for split, names in CELEBA_SPLITS.items():
        if lists == "pickle":
            py2_pickle(root / split / "filenames.pickle", names)
        else:
            text(root / f"{split}.txt", names)
    anno = zipped / "CelebAMask-HQ-mask-anno"
    rows = {0: {"skin": (0, 8), "hair": (0, 3)}, 1: {"skin": (2, 6)}, 2500: {"skin": (0, 8), "l_eye": (4, 5)}}
    for iid, parts in rows.items():
        for part, (a, b) in parts.items():
            m = np.zeros((8, 8, 3), np.uint8)  # part masks are 0/255, some saved as RGB
            m[a:b] = 255
            p = anno / str(iid // 2000) / f"{iid:05d}_{part}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(m).save(p)
    return root


TEXTCAPS = {"train": {"011e7e629fb9ae7b": ["a sign that says stop", "a red stop sign", LONG],
                      "0a0bc91825468c45": ["a bottle of coca cola"]},
            "val": {"fd2f4e8a1c0b3d57": ["a book titled python"]}}


def make_textcaps(root: Path) -> Path:
    """TextCaps_0.1_{train,val}.json: one entry per caption; images in train_images/."""
    for split, images in TEXTCAPS.items():
        data = []
        for hid, caps in images.items():
            jpeg(root / "train_images" / f"{hid}.jpg", textcaps_int_id(hid) % 1000)
            for k, c in enumerate(caps):
                data.append({"image_id": hid, "image_classes": ["Sign"], "flickr_original_url": "",
                             "flickr_300k_url": "",
                             "image_width": 24, "image_height": 16, "set_name": split, "image_name": hid,
                             "image_path": f"train/{hid}.jpg", "caption_id": k, "caption_str": c,
                             "caption_tokens": ["<s>", *c.split(), "</s>"], "reference_strs": caps,
                             "reference_tokens": [c.split() for c in caps]})
        (root / f"TextCaps_0.1_{split}.json").write_text(json.dumps(
            {"dataset_type": split, "dataset_name": "textcaps", "dataset_version": "0.1", "data": data}))
    return root


COCO = {"train2014": {9: ["a plate of food", "food on a table", LONG], 25: ["a giraffe eating leaves"]},
        "val2014": {42: ["a red bus on a street", "a bus"]}}


def make_coco(root: Path) -> Path:
    ann_id = 1
    for split, images in COCO.items():
        ims, anns = [], []
        for iid, caps in images.items():
            name = f"COCO_{split}_{iid:012d}.jpg"
            jpeg(root / split / name, iid)
            ims.append({"id": iid, "file_name": name, "width": 24, "height": 16, "license": 1,
                        "coco_url": "", "flickr_url": "", "date_captured": ""})
            for c in caps:
                anns.append({"id": ann_id, "image_id": iid, "caption": c + " "})  # COCO captions carry stray spaces
                ann_id += 1
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"captions_{split}.json").write_text(json.dumps(
            {"info": {}, "licenses": [], "images": ims, "annotations": anns}))
    return root


COCOQA = {"train": [("what is on the plate ?", "food", 9, 0), ("how many giraffes are there ?", "one", 25, 1),
                    ("what is the giraffe eating ?", "leaves", 25, 0)],
          "test": [("what is the color of the bus ?", "red", 42, 2)]}


def make_cocoqa(root: Path) -> Path:
    make_coco(root)
    for split, rows in COCOQA.items():
        for i, name in enumerate(("questions.txt", "answers.txt", "img_ids.txt", "types.txt")):
            text(root / "cocoqa" / split / name, [str(r[i]) for r in rows])
    return root


def ref(ref_id: int, ann_id: int, image_id: int, split: str, sents: list[str]) -> dict:
    """One entry of the refer toolkit's refs(umd).p, with all its keys."""
    sent_ids = [ref_id * 10 + k for k in range(len(sents))]
    return {"ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "split": split, "category_id": 1,
            "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg", "sent_ids": sent_ids,
            "sentences": [{"sent_id": i, "sent": t, "raw": t.capitalize() + ".", "tokens": t.split()}
                          for i, t in zip(sent_ids, sents)]}


REFS = [ref(5, 101, 9, "train", ["the plate on the left", "a white plate"]), ref(6, 102, 25, "val", ["tall giraffe"]),
        ref(7, 103, 25, "test", ["the tree"])]
BOXES = {101: [1.5, 2.0, 10.0, 8.0], 102: [0.0, 0.0, 12.0, 16.0], 103: [12.0, 0.0, 12.0, 16.0]}


def make_refcocog(root: Path) -> Path:
    make_coco(root)
    py2_pickle(root / "refcocog" / "refs(umd).p", REFS)
    inst = {"info": {}, "licenses": [], "categories": [{"id": 1, "name": "plate", "supercategory": "x"}],
            "images": [{"id": 9, "file_name": "COCO_train2014_000000000009.jpg", "width": 24, "height": 16},
                       {"id": 25, "file_name": "COCO_train2014_000000000025.jpg", "width": 24, "height": 16}],
            "annotations": [{"id": a, "image_id": 9 if a == 101 else 25, "bbox": b, "category_id": 1, "area": 1.0,
                             "iscrowd": 0, "segmentation": [[0, 0, 1, 0, 1, 1]]} for a, b in BOXES.items()]}
    (root / "refcocog" / "instances.json").write_text(json.dumps(inst))
    return root


# --- adapters ---------------------------------------------------------------------------------------

def test_all_adapters_are_registered():
    assert {"cub", "mmceleba", "textcaps", "coco", "cocoqa", "refcocog"} <= set(list_datasets())


def test_caption_filter_is_the_authors():
    assert keep_caption(" ".join(["w"] * 27)) and not keep_caption(" ".join(["w"] * 28))


@pytest.mark.parametrize("layout", ["parent", "text-inside", "authors"])
def test_cub(tmp_path, layout):
    if layout == "parent":
        src = get_source("cub", make_cub(tmp_path))
    elif layout == "text-inside":  # root = CUB_200_2011 itself, with AttnGAN's `text/` inside it
        src = get_source("cub", make_cub(tmp_path, text_name="text", inside=True) / "CUB_200_2011")
    else:  # the authors' loader: root = CUB_200_2011 with AttnGAN's birds.zip unpacked in it (birds/text/)
        src = get_source("cub", make_cub(tmp_path, text_name="birds/text", inside=True) / "CUB_200_2011")
    assert src.has_label_maps() is False
    assert src.splits() == ["train", "val", "test"]
    train, test = src.records("train"), src.records("test")
    assert [r.image_id for r in train] == [1, 3] and [r.image_id for r in test] == [2, 4]
    assert src.records("val") == test
    r1 = train[0]
    assert r1.path == tmp_path / "CUB_200_2011" / "images" / CUB_IMAGES[1] and r1.path.is_file()
    assert r1.captions == tuple(cub_caption(1, k) for k in range(9))  # the long 10th is dropped
    assert len(train[1].captions) == 10
    f = src.scan("train").caption_filter
    assert (f.captions_kept, f.captions_dropped, f.images_dropped) == (19, 1, 0)
    assert src.bounding_boxes()[3] == (30.0, 27.0, 325.0, 304.0)


def test_cub_broken(tmp_path):
    root = make_cub(tmp_path)
    cap = root / "text_c10" / Path(CUB_IMAGES[3]).with_suffix(".txt")
    cap.unlink()
    with pytest.raises(ArtifactError, match=str(cap)):
        get_source("cub", root).records("train")
    img = root / "CUB_200_2011" / "images" / CUB_IMAGES[2]
    truncate(img)
    rec = get_source("cub", root).records("test")[0]
    with pytest.raises(ArtifactError, match=str(img)):
        load_rgb(rec.path)
    with pytest.raises(ArtifactError, match=str(img)):
        ImageTextDataset([rec], image_size=8, train=False, resize_mode="resize_crop")[0]
    (root / "text_c10").rename(root / "captions")
    with pytest.raises(ArtifactError, match="text_c10"):
        get_source("cub", root)


@pytest.mark.parametrize("lists", ["pickle", "txt"])
def test_mmceleba(tmp_path, lists):
    root = make_mmceleba(tmp_path, lists=lists)
    src = get_source("mmceleba", root)
    train = src.records("train")
    assert [r.image_id for r in train] == [0, 2500] and [r.image_id for r in src.records("test")] == [1]
    assert train[0].path == root / "CelebA-HQ-img" / "0.jpg"
    assert train[0].captions == tuple(f"face 0 caption {k} smiling" for k in range(10))
    lm = read_label_map(train[0].mask_path)
    skin, hair = CELEBAMASK_PARTS.index("skin") + 1, CELEBAMASK_PARTS.index("hair") + 1
    assert (lm[:3] == hair).all() and (lm[3:] == skin).all()  # hair paints over skin
    lm = read_label_map(train[1].mask_path)
    assert (lm[4] == CELEBAMASK_PARTS.index("l_eye") + 1).all() and (lm[0] == skin).all()
    assert train[0].mask_path.parent == root / ".lgvq_cache" / "celebamask-labelmaps-v1"
    # the merge happens once: a second source reuses the cached map
    stamp = train[0].mask_path.stat().st_mtime_ns
    assert get_source("mmceleba", root).records("train")[0].mask_path.stat().st_mtime_ns == stamp
    item = ImageTextDataset(train, image_size=8, train=True, load_masks=True)[0]
    assert item["mask"].shape == (8, 8) and int(item["mask"].max()) == hair


def test_mmceleba_reads_celebamask_hq_zip_unpacked_beside_the_captions(tmp_path):
    """CelebAMask-HQ.zip unpacks to CelebAMask-HQ/{CelebA-HQ-img, CelebAMask-HQ-mask-anno}: images and masks
    are both found there (the MM-CelebA-HQ captions and lists stay at the root)."""
    root = make_mmceleba(tmp_path, unzipped=True)
    assert not (root / "CelebA-HQ-img").exists() and not (root / "CelebAMask-HQ-mask-anno").exists()
    src = get_source("mmceleba", root)
    train = src.records("train")
    assert [r.image_id for r in train] == [0, 2500]
    assert train[0].path == root / "CelebAMask-HQ" / "CelebA-HQ-img" / "0.jpg" and train[0].path.is_file()
    assert src.has_label_maps() and (read_label_map(train[0].mask_path)[3:] == CELEBAMASK_PARTS.index("skin") + 1).all()
    assert check_dataset("mmceleba", root).ok
    shutil.rmtree(root / "CelebAMask-HQ" / "CelebAMask-HQ-mask-anno")  # images only: no label maps, said up front
    src = get_source("mmceleba", root)
    assert src.has_label_maps() is False and src.records("test")[0].mask_path is None


def test_mmceleba_cache_dir_and_broken(tmp_path, monkeypatch):
    root = make_mmceleba(tmp_path / "d")
    monkeypatch.setenv("LGVQ_LABELMAP_CACHE", str(tmp_path / "cache"))
    assert get_source("mmceleba", root).records("test")[0].mask_path == tmp_path / "cache" / "1.png"
    (root / "CelebAMask-HQ-mask-anno" / "1" / "02500_skin.png").unlink()
    (root / "CelebAMask-HQ-mask-anno" / "1" / "02500_l_eye.png").unlink()
    with pytest.raises(ArtifactError, match="02500_<part>.png"):
        get_source("mmceleba", root).records("train")
    (root / "celeba-caption" / "1.txt").unlink()
    with pytest.raises(ArtifactError, match=str(root / "celeba-caption" / "1.txt")):
        get_source("mmceleba", root).records("test")
    py2_pickle(root / "test" / "filenames.pickle", collections.OrderedDict(a=1))  # a pickle that names a class
    with pytest.raises(ArtifactError, match="filenames.pickle"):
        get_source("mmceleba", root).records("test")


def test_label_map_cache_goes_to_the_configured_cache_dir(tmp_path):
    from lgvq.config import ConfigError, validate_config
    from lgvq.pipeline.common import dataset_source

    root = make_mmceleba(tmp_path / "d")
    cfg = validate_config({"datasets": {"celeba": {"source": "mmceleba", "root": str(root), "cache_dir": str(tmp_path / "c")},
                                        "coco": {"source": "coco", "root": str(root), "cache_dir": str(tmp_path / "c")}},
                           "tokenizers": {"vqgan": {"class": "vqgan"}}})
    rec = dataset_source(cfg, "celeba", root).records("test")[0]
    assert rec.mask_path == tmp_path / "c" / "1.png" and rec.mask_path.is_file()
    assert not (root / ".lgvq_cache").exists()  # a read-only root stays untouched
    with pytest.raises(ConfigError, match="datasets.coco.cache_dir"):
        dataset_source(cfg, "coco", root)


def test_textcaps(tmp_path):
    root = make_textcaps(tmp_path)
    src = get_source("textcaps", root)
    train = src.records("train")
    assert [r.image_id for r in train] == [textcaps_int_id(h) for h in TEXTCAPS["train"]]
    assert train[0].path == root / "train_images" / "011e7e629fb9ae7b.jpg"
    assert train[0].captions == ("a sign that says stop", "a red stop sign")
    assert train[1].captions == ("a bottle of coca cola",)
    assert src.records("val") == src.records("test") and src.records("val")[0].captions == ("a book titled python",)
    assert src.scan("train").caption_filter.captions_dropped == 1
    (root / "train_images" / "0a0bc91825468c45.jpg").unlink()
    with pytest.raises(ArtifactError, match="0a0bc91825468c45.jpg"):
        get_source("textcaps", root).records("train")


def test_coco(tmp_path):
    root = make_coco(tmp_path)
    src = get_source("coco", root)
    assert src.has_label_maps() is False  # semantic synthesis is left out of its default stage-2 tasks
    train = src.records("train")
    assert [r.image_id for r in train] == [9, 25]
    assert train[0].path == root / "train2014" / "COCO_train2014_000000000009.jpg"
    assert train[0].captions == ("a plate of food", "food on a table")
    assert [r.image_id for r in src.records("val")] == [42] and src.records("test") == src.records("val")
    # an image the captions file lists without a caption
    data = json.loads((root / "annotations" / "captions_val2014.json").read_text())
    data["annotations"] = []
    (root / "annotations" / "captions_val2014.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="captions_val2014.json.*COCO_val2014_000000000042.jpg"):
        get_source("coco", root).records("val")


def test_cocoqa(tmp_path):
    root = make_cocoqa(tmp_path)
    src = get_source("cocoqa", root)
    qa = src.qa("train")
    assert [(q.question, q.answer, q.image_id, q.qtype) for q in qa] == COCOQA["train"]
    assert [(q.answer, q.qtype) for q in src.qa("test")] == [("red", 2)] and src.qa("val") == src.qa("test")
    recs = src.records("train")
    assert [r.image_id for r in recs] == [9, 25] and recs[1].captions == ("a giraffe eating leaves",)
    assert src.records("test")[0].path == root / "val2014" / "COCO_val2014_000000000042.jpg"
    (root / "cocoqa" / "test" / "types.txt").write_text("2\n0\n")  # parallel files out of step
    with pytest.raises(ArtifactError, match="different line counts"):
        get_source("cocoqa", root).qa("test")
    (root / "annotations" / "captions_train2014.json").unlink()
    with pytest.raises(ArtifactError, match="captions_train2014.json"):
        get_source("cocoqa", root).records("train")


def test_refcocog(tmp_path):
    root = make_refcocog(tmp_path)
    src = get_source("refcocog", root)
    refs = src.refs("train")
    assert [(r.ref_id, r.image_id, r.sentence, r.bbox_xywh) for r in refs] == [
        (5, 9, "the plate on the left", (1.5, 2.0, 10.0, 8.0)), (5, 9, "a white plate", (1.5, 2.0, 10.0, 8.0))]
    assert [r.bbox_xywh for r in src.refs("test")] == [(12.0, 0.0, 12.0, 16.0)]
    assert [r.image_id for r in src.records("val")] == [25]
    assert src.records("train")[0].path == root / "train2014" / "COCO_train2014_000000000009.jpg"
    bad = [dict(REFS[0], ann_id=999)]
    py2_pickle(root / "refcocog" / "refs(umd).p", bad)
    with pytest.raises(ArtifactError, match="instances.json"):
        get_source("refcocog", root).refs("train")
    py2_pickle(root / "refcocog" / "refs(umd).p", collections.OrderedDict(a=1))
    with pytest.raises(ArtifactError, match=r"refs\(umd\).p"):
        get_source("refcocog", root).refs("train")


# --- lgvq data check --------------------------------------------------------------------------------

@pytest.mark.parametrize("name, make", [("cub", make_cub), ("mmceleba", make_mmceleba), ("textcaps", make_textcaps),
                                        ("coco", make_coco), ("cocoqa", make_cocoqa), ("refcocog", make_refcocog)])
def test_check_passes_on_every_fixture(tmp_path, name, make):
    report = check_dataset(name, make(tmp_path))
    assert report.ok, report.format()
    assert all(s.images > 0 for s in report.splits)


def test_check_reports_everything_and_exits_nonzero(tmp_path, capsys):
    root = make_cub(tmp_path)
    assert main(["data", "check", "cub", "--root", str(root)]) == 0
    assert "OK:" in capsys.readouterr().out
    img = root / "CUB_200_2011" / "images" / CUB_IMAGES[2]
    truncate(img)
    cap = root / "text_c10" / Path(CUB_IMAGES[4]).with_suffix(".txt")
    cap.unlink()
    text(root / "text_c10" / Path(CUB_IMAGES[3]).with_suffix(".txt"), [])  # an image without captions
    assert main(["data", "check", "cub", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert f"unreadable: {img}" in out and "missing: caption file of image" in out and str(cap) in out
    assert "no captions" in out
    assert "FAILED: 1 missing file(s), 1 unreadable image(s), 1 image(s) without captions" in out
    assert "train: 1 images, 9 captions (1 over 30 tokens dropped" in out
    # --split train alone still fails: its caption file is empty
    assert main(["data", "check", "cub", "--root", str(root), "--split", "train"]) == 1
    assert main(["data", "check", "cub", "--root", str(tmp_path / "nowhere")]) == 1
    assert "dataset root not found" in capsys.readouterr().out


def test_coco_serves_cocoqa_and_refcocog_so_the_heads_use_the_coco_codebook(tmp_path):
    """Tables 8 and 9 use the MS-COCO codebook: the coco source exposes both annotation sets."""
    root = make_refcocog(make_cocoqa(tmp_path))
    src = get_source("coco", root)
    assert [(q.question, q.answer) for q in src.qa("test")] == [(q, a) for q, a, _, _ in COCOQA["test"]]
    assert [r.sentence for r in src.refs("test")] == ["the tree"]
    # every referenced image has codes under some coco split (train2014 is "train")
    ids = {r.image_id for s in ("train", "val", "test") for r in src.records(s)}
    assert {r.image_id for s in ("train", "test") for r in src.refs(s)} <= ids
    with pytest.raises(ArtifactError, match="no question-answer annotations"):
        get_source("coco", make_coco(tmp_path / "bare")).qa("train")


def test_check_summary_agrees_with_its_error_lines_when_a_split_cannot_be_read(tmp_path, capsys):
    from lgvq.data.synth import generate

    generate(tmp_path / "d", n=20, size=16, seed=0)
    (tmp_path / "d" / "annotations" / "captions_val.json").unlink()
    assert main(["data", "check", "shapes", "--root", str(tmp_path / "d")]) == 1
    out = capsys.readouterr().out
    assert "val: could not be read" in out and "val: 0 images" not in out
    assert f"error: missing file: {tmp_path / 'd' / 'annotations' / 'captions_val.json'}" in out
    assert out.strip().splitlines()[-1] == "FAILED: 1 error(s) reading the annotations or the root"
