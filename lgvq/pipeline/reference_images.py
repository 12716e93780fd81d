"""The image-side references (lgvq.pipeline.references): real-vs-real FID, the 1-code tokenizer, the
text-to-image attribute accuracy of always answering "absent" and of the real images, and training code
grids shuffled per image and decoded.

Every FID here is computed like the models' (lgvq.pipeline.artifacts.score_fid): the configured extractor,
against the same reference folder (the first `eval_images` real test images), with `eval_images` images on
the other side, so a reference row and the models' cells are at the same sample count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from lgvq.data.attributes import CAPTION_SCORED
from lgvq.metrics.image import to_uint8
from lgvq.pipeline import paths
from lgvq.pipeline.artifacts import (FID_OFF_REASON, eval_images, fid_extractor, png_folder, reference_folder,
                                     score_fid, write_pngs)
from lgvq.pipeline.common import device as pick_device
from lgvq.pipeline.reference_jobs import Measured
from lgvq.pipeline.references import GENERATION_KINDS, SAMPLES_KIND, Reference
from lgvq.settings import dataset_settings, eval_settings, stage2_settings

BATCH = 50


def _tagged(key: str, tag: str) -> str:
    """FID[shapes-cnn] -> FID[shapes-cnn,AR-GPT]; attribute_accuracy -> attribute_accuracy[AR-GPT] (stage 2's keys)."""
    return f"{key[:-1]},{tag}]" if key.endswith("]") else f"{key}[{tag}]"


def _with_ar(cfg: dict[str, Any], metrics: dict[str, float], notes: dict[str, str]) -> tuple[dict, dict]:
    """The text-to-image record: the numbers under the keys of each text-to-image generator the config runs
    (each task's `metric_tag`: t2i_diffusion untagged, t2i_ar "AR-GPT"), so the reference fills exactly the
    models' columns."""
    from lgvq.stage2.registry import STAGE2_TASKS, tasks_by_table

    tasks = stage2_settings(cfg).tasks
    m, n = {}, {}
    for name in tasks_by_table()["text_to_image"]:
        if name not in tasks:
            continue
        tag = STAGE2_TASKS.get(name).metric_tag
        key = (lambda k: _tagged(k, tag)) if tag else (lambda k: k)
        m.update({key(k): v for k, v in metrics.items()})
        n.update({key(k): v for k, v in notes.items() if k in metrics})
    return m, n


def _fid_records(cfg: dict[str, Any], kinds: tuple[str, ...], metrics: dict[str, float], notes: dict[str, str],
                 not_computed: dict[str, str]) -> dict[str, Measured]:
    out = {}
    for kind in kinds:
        m, n = _with_ar(cfg, metrics, notes) if kind == "text_to_image" else (dict(metrics), dict(notes))
        out[kind] = Measured(m, n, not_computed=dict(not_computed))
    return out


def disjoint_split(n_test: int, n: int) -> tuple[range, range, bool]:
    """(reference rows, other rows, same reference as the models): the models' FIDs compare `n` images with the
    first `n` test images; real-vs-real compares those with the next `n`. A test split shorter than 2n is cut
    into two halves instead (a smaller count than the models': said in the note)."""
    n = min(n, n_test)
    if n_test >= 2 * n:
        return range(0, n), range(n, 2 * n), True
    half = n_test // 2
    return range(0, half), range(half, 2 * half), False


def _write_images(data, rows: range, records, folder: Path) -> None:
    with png_folder(folder) as tmp:
        for i in range(rows.start, rows.stop, BATCH):
            idx = range(i, min(i + BATCH, rows.stop))
            x = torch.stack([data[j]["image"] for j in idx])
            write_pngs(to_uint8(x), [f"{records[j].image_id:012d}" for j in idx], tmp)


def real_vs_real(cfg: dict[str, Any], ref: Reference, dataset: str, tokenizer: None, seed: int) -> dict[str, Measured]:
    R, n = cfg["results_dir"], dataset_settings(cfg, dataset).eval_images
    extractor = fid_extractor(cfg, dataset)
    if extractor is None:
        return _fid_records(cfg, ref.kinds, {}, {}, {"FID": FID_OFF_REASON})
    data, records = eval_images(cfg, dataset, split="test")
    ref_rows, other_rows, same = disjoint_split(len(records), n)
    if len(other_rows) < 2:  # no covariance from one image: the row says why it is empty instead of failing the DAG
        return _fid_records(cfg, ref.kinds, {}, {}, {"FID": f"real-vs-real needs at least 4 test images; dataset "
                                                           f"'{dataset}' has {len(records)}"})
    work = paths.reference_dir(R, ref.kinds[0], dataset, ref.name, None, seed)
    _write_images(data, other_rows, records, work / "images")
    if same:
        reference = reference_folder(cfg, dataset)
        how = (f"real test images {other_rows.start}-{other_rows.stop - 1} vs the models' reference (the first {n} "
               "test images): the same extractor and counts as every reconstruction and stage-2 FID")
    else:
        reference = work / "reference_half"
        _write_images(data, ref_rows, records, reference)
        how = (f"the test split has {len(records)} images, fewer than 2 x eval_images ({n}): its two halves of "
               f"{len(ref_rows)} images, a smaller count than the models' FIDs (FID falls with the count)")
    fid = score_fid(work / "images", reference, extractor, paths.dataset_dir(R, dataset) / "eval" / "fid_cache",
                    note_suffix=f"; ceiling: {how}")
    return _fid_records(cfg, ref.kinds, fid.metrics, fid.notes, {})


@torch.no_grad()
def mean_image(data, rows: range) -> torch.Tensor:
    """The per-pixel mean (3, H, W) of `data[rows]`, summed `BATCH` images at a time in float64."""
    total, count = None, 0
    for i in range(rows.start, rows.stop, BATCH):
        x = torch.stack([data[j]["image"] for j in range(i, min(i + BATCH, rows.stop))]).double()
        total = x.sum(0) if total is None else total + x.sum(0)
        count += len(x)
    if total is None:
        raise ValueError("mean image of no images")
    return (total / count).float()


def one_code(cfg: dict[str, Any], ref: Reference, dataset: str, tokenizer: None, seed: int) -> dict[str, Measured]:
    """A tokenizer with one code: its best decoder output under L2 is one image for all, the per-pixel mean of
    the training images. PSNR, SSIM and FID of that image against the models' test images."""
    from lgvq.metrics.image import psnr_per_image, ssim_per_image

    R, n = cfg["results_dir"], dataset_settings(cfg, dataset).eval_images
    extractor = fid_extractor(cfg, dataset)
    train, _ = eval_images(cfg, dataset, split="train")
    mean = to_uint8(mean_image(train, range(len(train)))[None])
    test, records = eval_images(cfg, dataset, limit=n)
    psnr, ssim = [], []
    folder = paths.reference_dir(R, "reconstruction", dataset, ref.name, None, seed) / "reconstructions"
    with png_folder(folder) as tmp:
        for i in range(0, len(test), BATCH):
            real = to_uint8(torch.stack([test[j]["image"] for j in range(i, min(i + BATCH, len(test)))]))
            rec = np.repeat(mean, len(real), axis=0)
            psnr.append(psnr_per_image(real, rec))
            ssim.append(ssim_per_image(real, rec))
            write_pngs(rec, [f"{r.image_id:012d}" for r in records[i : i + len(real)]], tmp)
    fid = score_fid(folder, reference_folder(cfg, dataset) if extractor is not None else None, extractor,
                    paths.dataset_dir(R, dataset) / "eval" / "fid_cache",
                    note_suffix=f"; baseline: the per-pixel mean of the {len(train)} training images, once per test image")
    p, s = np.concatenate(psnr), np.concatenate(ssim)
    how = f"the per-pixel mean training image ({len(train)} images) as every reconstruction"
    return {"reconstruction": Measured(
        {**fid.metrics, "PSNR": float(p.mean()), "SSIM": float(s.mean())},
        {**fid.notes, "PSNR": f"per image, RGB, uint8, data_range 255, mean over {len(p)} test images; {how}",
         "SSIM": f"per image, RGB, uint8, data_range 255, mean over {len(s)} test images; {how}"},
        not_computed=fid.not_computed)}


def _attribute_setup(cfg: dict[str, Any], dataset: str):
    """(extractor, the records of the models' test conditions), or None when attribute accuracy is not
    computed (it needs the shapes-cnn classifier of the embedded data)."""
    from lgvq.pipeline.common import dataset_source

    extractor = fid_extractor(cfg, dataset)
    if extractor is None or extractor.name != "shapes-cnn":
        return None
    return extractor, dataset_source(cfg, dataset).records("test")[: dataset_settings(cfg, dataset).eval_images]


ATTRIBUTE_OFF = "attribute accuracy needs the shapes-cnn classifier (eval.fid_extractor: shapes-cnn, embedded data)"


ATTRIBUTES_OFF = {"attribute_accuracy": ATTRIBUTE_OFF, "caption_following": ATTRIBUTE_OFF}


def _attribute_record(cfg: dict[str, Any], following, n_captions: int, note: str) -> dict[str, Measured]:
    from lgvq.pipeline.stage2 import attribute_notes

    notes = {k: f"{v}; {note}" for k, v in attribute_notes(n_captions, what="image").items()}
    m, n = _with_ar(cfg, following.metrics(), notes)
    return {"text_to_image": Measured(m, n)}


def _wanted(captions: list[str]) -> torch.Tensor:
    from lgvq.data.attributes import caption_attribute_vector

    return torch.as_tensor(np.stack([caption_attribute_vector(c) for c in captions]))


def _score_attributes(classifier, records, images_of) -> Any:
    """A CaptionFollowing over the models' test conditions (each record's first caption, and the next
    record's as its mismatched one), with `images_of(rows)` giving the images of a batch of rows."""
    from lgvq.metrics.attributes import CaptionFollowing, mismatched

    mask = torch.as_tensor(CAPTION_SCORED)
    wanted = _wanted([r.captions[0] for r in records])
    wanted_mismatched, following = torch.stack(mismatched(wanted)), CaptionFollowing()
    for i in range(0, len(records), BATCH):
        rows = range(i, min(i + BATCH, len(records)))
        following.add(classifier, images_of(rows), wanted[i : rows.stop], wanted_mismatched[i : rows.stop], mask)
    return following


def always_absent(cfg: dict[str, Any], ref: Reference, dataset: str, tokenizer: None, seed: int) -> dict[str, Measured]:
    setup = _attribute_setup(cfg, dataset)
    if setup is None:
        return {"text_to_image": Measured({}, not_computed=dict(ATTRIBUTES_OFF))}
    _, records = setup
    # the same scoring as the samples', with a classifier whose every logit says "absent" (caption_following
    # is then exactly 0: the mismatched captions are the same captions, so they name as many slots)
    n_attr = len(CAPTION_SCORED)
    following = _score_attributes(lambda x: torch.full((len(x), n_attr), -1.0), records,
                                  lambda rows: torch.zeros(len(rows), 3, 4, 4))
    return _attribute_record(cfg, following, len(records), "every scored shape and colour slot answered 'absent'")


@torch.no_grad()
def real_images(cfg: dict[str, Any], ref: Reference, dataset: str, tokenizer: None, seed: int) -> dict[str, Measured]:
    setup = _attribute_setup(cfg, dataset)
    if setup is None:
        return {"text_to_image": Measured({}, not_computed=dict(ATTRIBUTES_OFF))}
    extractor, records = setup
    data, _ = eval_images(cfg, dataset, limit=len(records))
    following = _score_attributes(extractor, records, lambda rows: torch.stack([data[j]["image"] for j in rows]))
    return _attribute_record(cfg, following, len(records), "the real test images whose first captions condition the models' samples")


@torch.no_grad()
def decoded_codes(cfg: dict[str, Any], ref: Reference, dataset: str, tokenizer: str, seed: int) -> dict[str, Measured]:
    """The tokenizer's own decoding of the real test images' codes, scored like the samples: what a second
    stage reaches through this tokenizer if it generated every image's true codes (its FID is the
    reconstruction FID of the same images; attribute accuracy reads the decoder's images, blur and all)."""
    from lgvq.pipeline.artifacts import CodeTable
    from lgvq.pipeline.common import dataset_source
    from lgvq.pipeline.tokenizer import load_tokenizer

    R, n = cfg["results_dir"], dataset_settings(cfg, dataset).eval_images
    extractor = fid_extractor(cfg, dataset)
    if extractor is None:
        return _fid_records(cfg, GENERATION_KINDS, {}, {}, {"FID": FID_OFF_REASON})
    dev = pick_device(cfg)
    records = dataset_source(cfg, dataset).records("test")[:n]
    codes = CodeTable(paths.tokenizer_dir(R, dataset, tokenizer, "base", seed), ("test",))
    model = load_tokenizer(cfg, dataset, tokenizer, "base", seed).to(dev).eval()

    def decoded(rows) -> torch.Tensor:
        batch = codes.batch([codes(records[j].image_id) for j in rows], dev)
        return model.decode_codes(batch).clamp(-1, 1).cpu()

    folder = paths.reference_dir(R, SAMPLES_KIND, dataset, ref.name, tokenizer, seed) / "samples"
    with png_folder(folder) as tmp:
        for i in range(0, len(records), BATCH):
            rows = range(i, min(i + BATCH, len(records)))
            write_pngs(to_uint8(decoded(rows)), [f"{records[j].image_id:012d}" for j in rows], tmp)
    fid = score_fid(folder, reference_folder(cfg, dataset), extractor, paths.dataset_dir(R, dataset) / "eval" / "fid_cache",
                    note_suffix=f"; ceiling: the first {len(records)} test images' codes of {tokenizer} base seed {seed}, "
                                "decoded by it (the models' sample count)")
    out = _fid_records(cfg, GENERATION_KINDS, fid.metrics, fid.notes, {})
    if extractor.name == "shapes-cnn":
        following = _score_attributes(extractor, records, decoded)  # the same records and classifier as the FID's
        attributes = _attribute_record(cfg, following, len(records), f"the test images' codes of {tokenizer} base seed {seed}, decoded")
        out["text_to_image"].metrics.update(attributes["text_to_image"].metrics)
        out["text_to_image"].notes.update(attributes["text_to_image"].notes)
    else:
        out["text_to_image"].not_computed.update(ATTRIBUTES_OFF)
    return out


def shuffle_positions(codes: np.ndarray, seed: int) -> np.ndarray:
    """(N, h, w) code grids with each grid's positions permuted by its own draw: every image keeps its codes
    (and the split its code frequencies), the spatial layout is gone."""
    rng = np.random.default_rng(seed)
    flat = codes.reshape(len(codes), -1)
    out = np.stack([row[rng.permutation(flat.shape[1])] for row in flat])
    return out.reshape(codes.shape)


@torch.no_grad()
def shuffled_codes(cfg: dict[str, Any], ref: Reference, dataset: str, tokenizer: str, seed: int) -> dict[str, Measured]:
    from lgvq.pipeline.artifacts import load_codes
    from lgvq.pipeline.tokenizer import load_tokenizer

    R, n = cfg["results_dir"], dataset_settings(cfg, dataset).eval_images
    extractor = fid_extractor(cfg, dataset)
    if extractor is None:
        return _fid_records(cfg, GENERATION_KINDS, {}, {}, {"FID": FID_OFF_REASON})
    dev = pick_device(cfg)
    codes = load_codes(paths.codes_file(R, dataset, tokenizer, "base", seed, "train"))[:n]
    shuffled = shuffle_positions(codes, eval_settings(cfg).mask_eval_seed * 7919 + seed)
    model = load_tokenizer(cfg, dataset, tokenizer, "base", seed).to(dev).eval()
    folder = paths.reference_dir(R, SAMPLES_KIND, dataset, ref.name, tokenizer, seed) / "samples"
    with png_folder(folder) as tmp:
        for i in range(0, len(shuffled), BATCH):
            x = model.decode_codes(torch.as_tensor(shuffled[i : i + BATCH], dtype=torch.long, device=dev))
            write_pngs(to_uint8(x.clamp(-1, 1).cpu()), [f"{j:012d}" for j in range(i, i + len(x))], tmp)
    fid = score_fid(folder, reference_folder(cfg, dataset), extractor, paths.dataset_dir(R, dataset) / "eval" / "fid_cache",
                    note_suffix=f"; baseline: the first {len(codes)} training code grids of {tokenizer} base seed {seed}, "
                                "positions shuffled per image, decoded (the models' sample count)")
    return _fid_records(cfg, GENERATION_KINDS, fid.metrics, fid.notes, {})
