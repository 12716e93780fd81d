"""The embedded "shapes" dataset: procedural, deterministic, offline, in real on-disk formats.

Each image holds 1-3 non-overlapping objects with a shape, a colour, a size and a position.
From the same ground truth we write, in the formats the real datasets use:
captions (COCO captions JSON, 5 varied captions per image with synonyms, word order and
spatial relations), objects (COCO instances JSON), per-pixel label maps (CelebAMask-HQ-like
"L" PNGs: 0 = background, 1..S = shape class), questions (COCO-QA's parallel text files with
its four question types), referring expressions (RefCOCOg-style refs pickle + instances) and
the attributes themselves (attributes_<split>.json), so every task has a ground truth.

Same arguments -> byte-identical files: one seeded RNG, records in generation order with sorted
keys, PNGs without metadata. Memory is bounded by one image's records (lgvq.data.spool).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from lgvq.data import formats
from lgvq.data.spool import JsonSpool, PickleListSpool, write_json_members, write_pickled_list
from lgvq.io import ArtifactError, atomic_path, atomic_write_bytes, atomic_write_json

SHAPES = ("circle", "square", "triangle", "diamond", "cross")
COLOURS = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 210, 40),
    "purple": (150, 60, 190), "orange": (240, 140, 30), "white": (245, 245, 245), "cyan": (40, 200, 210),
}
SIZES = ("small", "large")
SYNONYMS = {
    "circle": ("circle", "disc", "round shape"), "square": ("square", "box", "block"),
    "triangle": ("triangle", "wedge", "triangular shape"), "diamond": ("diamond", "rhombus", "lozenge"),
    "cross": ("cross", "plus sign", "plus shape"),
}
BACKGROUNDS = ((30, 30, 30), (70, 70, 80), (110, 100, 90))
TEXT_WORDS = ("stop", "open", "cafe", "sale", "exit", "taxi", "bus", "park")
SPLITS = {"train": 0.8, "val": 0.1, "test": 0.1}
QTYPES = {"object": 0, "number": 1, "color": 2, "location": 3}
NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}


def _place(rng: random.Random, size: int, n: int) -> list[dict[str, Any]]:
    """Non-overlapping boxes: sample until every object fits (deterministic given rng)."""
    objects: list[dict[str, Any]] = []
    attempts = 0
    while len(objects) < n and attempts < 200:
        attempts += 1
        scale = rng.choice(SIZES)
        side = int(size * (0.22 if scale == "small" else 0.38))
        x, y = rng.randint(1, size - side - 1), rng.randint(1, size - side - 1)
        box = (x, y, side, side)
        if any(_overlap(box, o["bbox"]) for o in objects):
            continue
        objects.append({"shape": rng.choice(SHAPES), "colour": rng.choice(sorted(COLOURS)), "size": scale,
                        "bbox": [x, y, side, side], "centre": [x + side / 2, y + side / 2]})
    return objects


def _overlap(a, b, margin: int = 1) -> bool:
    return not (a[0] + a[2] + margin <= b[0] or b[0] + b[2] + margin <= a[0]
                or a[1] + a[3] + margin <= b[1] or b[1] + b[3] + margin <= a[1])


def _polygon(shape: str, x: int, y: int, s: int) -> list[tuple[float, float]] | None:
    if shape == "triangle":
        return [(x + s / 2, y), (x + s, y + s), (x, y + s)]
    if shape == "diamond":
        return [(x + s / 2, y), (x + s, y + s / 2), (x + s / 2, y + s), (x, y + s / 2)]
    if shape == "cross":
        t = s / 3
        return [(x + t, y), (x + 2 * t, y), (x + 2 * t, y + t), (x + s, y + t), (x + s, y + 2 * t),
                (x + 2 * t, y + 2 * t), (x + 2 * t, y + s), (x + t, y + s), (x + t, y + 2 * t), (x, y + 2 * t),
                (x, y + t), (x + t, y + t)]
    return None


def _draw(draw: ImageDraw.ImageDraw, shape: str, bbox: list[int], fill) -> None:
    x, y, s, _ = bbox
    poly = _polygon(shape, x, y, s)
    if shape == "circle":
        draw.ellipse([x, y, x + s - 1, y + s - 1], fill=fill)
    elif shape == "square":
        draw.rectangle([x, y, x + s - 1, y + s - 1], fill=fill)
    else:
        draw.polygon(poly, fill=fill)


def _relation(a: dict, b: dict) -> str:
    dx, dy = a["centre"][0] - b["centre"][0], a["centre"][1] - b["centre"][1]
    if abs(dx) >= abs(dy):
        return "to the left of" if dx < 0 else "to the right of"
    return "above" if dy < 0 else "below"


def _location(obj: dict, size: int) -> str:
    cx, cy = obj["centre"]
    horiz = "left" if cx < size / 3 else ("right" if cx > 2 * size / 3 else "middle")
    vert = "top" if cy < size / 3 else ("bottom" if cy > 2 * size / 3 else "middle")
    return horiz if vert == "middle" else vert


def _np(rng: random.Random, o: dict) -> str:
    """A noun phrase with a random synonym and optional size adjective."""
    noun = rng.choice(SYNONYMS[o["shape"]])
    adj = f"{o['size']} " if rng.random() < 0.5 else ""
    return f"{adj}{o['colour']} {noun}"


def captions_for(rng: random.Random, objects: list[dict], word: str | None) -> list[str]:
    """Five captions mentioning every object's colour and shape, in varied forms."""
    count = NUMBER_WORDS[len(objects)]
    out: list[str] = []
    for k in range(5):
        order = objects[:]
        rng.shuffle(order)
        phrases = [_np(rng, o) for o in order]
        if k == 0:
            text = "a " + " and a ".join(phrases)
        elif k == 1:
            text = f"{count} object{'s' if len(objects) > 1 else ''}: " + ", ".join(phrases)
        elif k == 2 and len(order) >= 2:
            text = f"a {phrases[0]} {_relation(order[0], order[1])} a {phrases[1]}"
            if len(order) == 3:
                text += f" and a {phrases[2]}"
        elif k == 3:
            text = "there is a " + " and a ".join(phrases) + " on a dark background"
        else:
            text = "an image showing a " + " next to a ".join(phrases)
        if word is not None:
            text += f" with the word {word}"
        out.append(text)
    return out


def questions_for(rng: random.Random, objects: list[dict], size: int) -> list[tuple[str, str, int]]:
    """COCO-QA style (question, one-word answer, type) pairs derived from the ground truth."""
    qs: list[tuple[str, str, int]] = []
    o = rng.choice(objects)
    qs.append((f"what is the {o['colour']} object ?", o["shape"], QTYPES["object"]))
    qs.append(("how many objects are there ?", NUMBER_WORDS[len(objects)], QTYPES["number"]))
    qs.append((f"what is the color of the {o['shape']} ?", o["colour"], QTYPES["color"]))
    qs.append((f"where is the {o['colour']} {o['shape']} ?", _location(o, size), QTYPES["location"]))
    # a shape can appear twice with different colours: keep only unambiguous questions
    return [q for q in qs if _unambiguous(q, objects, o)]


def _unambiguous(q: tuple[str, str, int], objects: list[dict], o: dict) -> bool:
    if q[2] == QTYPES["object"]:
        return sum(x["colour"] == o["colour"] for x in objects) == 1
    if q[2] == QTYPES["color"]:
        return sum(x["shape"] == o["shape"] for x in objects) == 1
    if q[2] == QTYPES["location"]:
        return sum(x["shape"] == o["shape"] and x["colour"] == o["colour"] for x in objects) == 1
    return True


def render(objects: list[dict], size: int, background, word: str | None) -> tuple[Image.Image, Image.Image]:
    img = Image.new("RGB", (size, size), background)
    mask = Image.new("L", (size, size), 0)
    d, dm = ImageDraw.Draw(img), ImageDraw.Draw(mask)
    for o in objects:
        _draw(d, o["shape"], o["bbox"], COLOURS[o["colour"]])
        _draw(dm, o["shape"], o["bbox"], SHAPES.index(o["shape"]) + 1)
    if word is not None:
        d.text((1, size - 11), word, fill=(255, 255, 255))
    return img, mask


def _png_bytes(img: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)  # PIL writes no timestamp chunks: deterministic
    return buf.getvalue()


def generate(out: str | Path, *, n: int = 1000, size: int = 64, seed: int = 0, text_variant: bool = False) -> Path:
    """Write the dataset to `out` (see module docstring for the layout)."""
    if n < 10:
        raise ValueError(f"--n must be at least 10 (got {n}): every split needs images")
    if size < 16:
        raise ValueError(f"--size must be at least 16 px (got {size})")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)  # the spool folder goes inside it
    except OSError as e:
        raise ArtifactError(f"cannot write {out}: {e.strerror or e}") from e
    rng = random.Random(seed)
    split_of = ["train"] * int(n * SPLITS["train"]) + ["val"] * int(n * SPLITS["val"])
    split_of += ["test"] * (n - len(split_of))
    # Every record goes to a spool file on disk as soon as it is made (lgvq.data.spool): memory
    # holds one image's records, not the dataset's (~12 KB per image as Python lists).
    with tempfile.TemporaryDirectory(dir=out, prefix=".synth-spool-") as tmp, contextlib.ExitStack() as stack:
        def spool(kind: str):
            s = JsonSpool(tmp, kind)
            stack.callback(s.close)
            return s

        images = {s: spool("array") for s in SPLITS}
        captions = {s: spool("array") for s in SPLITS}
        objects_of = {s: spool("array") for s in SPLITS}
        attrs = {s: spool("object") for s in SPLITS}
        all_images, all_objects = spool("array"), spool("array")
        refs = PickleListSpool(tmp)
        stack.callback(refs.close)
        qa = {s: [stack.enter_context(open(Path(tmp) / f"qa-{s}-{name}", "w", encoding="utf-8"))
                  for name in formats.COCOQA_FILES] for s in SPLITS}
        ann_id = obj_id = ref_id = sent_id = 0
        for i in tqdm(range(n), desc="synth", mininterval=1.0):
            image_id = i + 1
            split = split_of[i]
            objects = _place(rng, size, rng.randint(1, 3))
            word = rng.choice(TEXT_WORDS) if text_variant else None
            img, mask = render(objects, size, rng.choice(BACKGROUNDS), word)
            name = f"{image_id:012d}.png"
            # One fsync per PNG made generation ~3.5x slower (100k images: ~45 min on 2 shared cores);
            # the images are flushed by the one sync below, before any metadata names them.
            atomic_write_bytes(out / "images" / split / name, _png_bytes(img), fsync=False)
            atomic_write_bytes(out / "masks" / name, _png_bytes(mask), fsync=False)
            image = {"id": image_id, "file_name": name, "width": size, "height": size}
            images[split].append(image)
            all_images.append(image)
            for cap in captions_for(rng, objects, word):
                ann_id += 1
                captions[split].append({"id": ann_id, "image_id": image_id, "caption": cap})
            for o in objects:
                obj_id += 1
                obj = {"id": obj_id, "image_id": image_id, "bbox": o["bbox"], "area": o["bbox"][2] * o["bbox"][3],
                       "iscrowd": 0, "category_id": SHAPES.index(o["shape"]) + 1}
                objects_of[split].append(obj)
                all_objects.append(obj)
                if sum(x["shape"] == o["shape"] and x["colour"] == o["colour"] for x in objects) == 1:
                    ref_id += 1
                    sents = []
                    for text in (f"the {o['colour']} {o['shape']}", f"{o['size']} {o['colour']} {rng.choice(SYNONYMS[o['shape']])}"):
                        sent_id += 1
                        sents.append({"sent": text, "raw": text, "tokens": text.split(), "sent_id": sent_id})
                    refs.append({"ref_id": ref_id, "ann_id": obj_id, "image_id": image_id, "split": split,
                                 "category_id": SHAPES.index(o["shape"]) + 1, "sentences": sents})
            for row in questions_for(rng, objects, size):
                q, a, t = row
                for fh, value in zip(qa[split], (q, a, image_id, t)):
                    fh.write(f"{value}\n")
            attrs[split].put(str(image_id), {"objects": objects, "word": word})

        for fh in (fh for files in qa.values() for fh in files):
            fh.close()
        os.sync()
        info = {"info": {"description": "lgvq"}, "licenses": []}
        categories = [{"id": k + 1, "name": s, "supercategory": "shape"} for k, s in enumerate(SHAPES)]
        for split in SPLITS:
            write_json_members(out / "annotations" / f"captions_{split}.json",
                               {**info, "images": images[split], "annotations": captions[split]})
            write_json_members(out / "annotations" / f"instances_{split}.json",
                               {**info, "images": images[split], "annotations": objects_of[split],
                                "categories": categories})
            for name in formats.COCOQA_FILES:
                with atomic_path(out / "cocoqa" / split / name) as dest:
                    shutil.copyfile(Path(tmp) / f"qa-{split}-{name}", dest)
            write_json_members(out / f"attributes_{split}.json", attrs[split])
        write_pickled_list(out / "refcocog" / "refs(umd).p", refs)
        write_json_members(out / "refcocog" / "instances.json",
                           {**info, "images": all_images, "annotations": all_objects, "categories": categories})
        atomic_write_json(out / "dataset.json", {
            "name": "shapes-text" if text_variant else "shapes", "n": n, "size": size, "seed": seed,
            "splits": {s: len(images[s]) for s in SPLITS}, "shapes": list(SHAPES),
            "colours": sorted(COLOURS), "sizes": list(SIZES), "label_map": {"0": "background",
                                                                            **{str(k + 1): s for k, s in enumerate(SHAPES)}}})
    return out


def main_synth(args: argparse.Namespace) -> None:
    path = generate(args.out, n=args.n, size=args.size, seed=args.seed, text_variant=args.text_variant)
    print(path)
