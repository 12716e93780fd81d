"""Write the embedded dataset in the official MS-COCO 2014 layout, with COCO-QA and RefCOCOg.

Why: the real-data adapters (`coco`, `cocoqa`, `refcocog`) are the code path the paper's numbers
go through, and the real data cannot be downloaded here. Exported this way, the whole DAG runs
through that path on data whose content we know, so a user (and CI) can see it work end to end
before pointing `datasets.<name>.root` at a real copy.

Layout written under `out` (what `lgvq data check coco --root out` expects):

    train2014/COCO_train2014_<12-digit id>.jpg      the embedded train split
    val2014/COCO_val2014_<12-digit id>.jpg          the embedded test split (COCO's val = our test)
    annotations/captions_{train,val}2014.json       COCO captions files
    cocoqa/{train,test}/{questions,answers,img_ids,types}.txt
    refcocog/refs(umd).p, refcocog/instances.json   refer-toolkit files

RefCOCOg draws every image from train2014 and splits by image; the export does the same: the
expressions of the train images, with a deterministic per-image split (1 in 5 images -> test,
1 in 10 -> val). Images are JPEG (quality 95) like COCO's, so pixels differ slightly from the PNGs.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from lgvq.data import formats
from lgvq.data.sources.shapes import ShapesSource
from lgvq.io import ArtifactError, atomic_path

# embedded split -> COCO 2014 folder
_FOLDER = {"train": "train2014", "test": "val2014"}
_QA_SPLIT = {"train": "train", "test": "test"}


def _ref_split(image_id: int) -> str:
    return "test" if image_id % 5 == 0 else ("val" if image_id % 10 == 1 else "train")


def export_coco2014(shapes_root: str | Path, out: str | Path) -> Path:
    """Re-write the embedded dataset at `shapes_root` (written by `lgvq data synth`) under `out`."""
    src, out = ShapesSource(shapes_root), Path(out)
    images_of: dict[str, list[dict]] = {}
    for split, folder in _FOLDER.items():
        images, annotations = [], []
        for rec in src.records(split):
            name = f"COCO_{folder}_{rec.image_id:012d}.jpg"
            with Image.open(rec.path) as im:
                rgb = im.convert("RGB")
            with atomic_path(out / folder / name) as tmp:
                rgb.save(tmp, format="JPEG", quality=95)
            images.append({"id": rec.image_id, "file_name": name, "width": rgb.width, "height": rgb.height})
            annotations += [{"id": len(annotations) + 1, "image_id": rec.image_id, "caption": c} for c in rec.captions]
        formats.write_coco_captions(out / "annotations" / f"captions_{folder}.json", images, annotations)
        formats.write_cocoqa(out / "cocoqa" / _QA_SPLIT[split],
                             [(q.question, q.answer, q.image_id, q.qtype) for q in src.qa(split)])
        images_of[split] = images

    refs, objects = [], []
    for k, r in enumerate(src.refs("train")):  # one record per expression; RefCOCOg groups them per object
        ann_id = k + 1
        objects.append({"id": ann_id, "image_id": r.image_id, "bbox": list(r.bbox_xywh), "category_id": 1,
                        "area": r.bbox_xywh[2] * r.bbox_xywh[3], "iscrowd": 0})
        refs.append({"ref_id": ann_id, "ann_id": ann_id, "image_id": r.image_id, "split": _ref_split(r.image_id),
                     "category_id": 1, "sent_ids": [ann_id],
                     "sentences": [{"sent_id": ann_id, "sent": r.sentence, "raw": r.sentence, "tokens": r.sentence.split()}]})
    if not refs:
        raise ArtifactError(f"{shapes_root}: the train split has no referring expressions to export")
    formats.write_refs(out / "refcocog" / "refs(umd).p", refs)
    formats.write_coco_instances(out / "refcocog" / "instances.json", images_of["train"], objects,
                                 [{"id": 1, "name": "shape", "supercategory": "shape"}])
    return out
