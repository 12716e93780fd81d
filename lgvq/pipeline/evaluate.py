"""`lgvq metrics train-extractor` and `lgvq eval reconstruction|text-alignment`.

Every metric value is written with its label: FID names its extractor and image counts,
PSNR/SSIM their convention, the text-alignment numbers the text encoder and protocol.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from lgvq.errors import ConfigError
from lgvq.io import ArtifactError, atomic_path
from lgvq.manifest import RunRecord
from lgvq.metrics.image import to_uint8
from lgvq.metrics.record import MetricRecord
from lgvq.pipeline import jobs, paths
from lgvq.pipeline.artifacts import (eval_images, fid_extractor, frozen_text_encoder, load_codes, png_folder,
                                     records_images, reference_folder, score_fid, text_cache, write_pngs)
from lgvq.pipeline.common import device as pick_device
from lgvq.pipeline.tokenizer import load_tokenizer
from lgvq.settings import (data_settings, dataset_settings, eval_settings, lg_settings, text_encoder_settings,
                           tokenizer_settings)


def train_feature_extractor(cfg: dict[str, Any], dataset: str) -> Path:
    """Train the offline FID extractor (shapes-cnn) on ground-truth attributes: the train split's images, or
    with `eval.shapes_cnn_images: N` on N images the embedded data's generator draws for it alone."""
    import shutil
    import tempfile

    from lgvq.pipeline.preflight import drawn_extractor_images_problem

    out = paths.shapes_cnn_dir(cfg["results_dir"], dataset)
    ev = eval_settings(cfg)
    record = RunRecord("metrics/train-extractor", jobs.feature_extractor(cfg, dataset), seed=ev.mask_eval_seed)
    problem = drawn_extractor_images_problem(cfg, dataset)
    if problem:
        raise ConfigError(problem)
    # A killed job's drawn images (below) are removed by the next run, whatever it trains on.
    for stale in out.glob(".synthetic-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if not ev.shapes_cnn_images:
        data, records = eval_images(cfg, dataset, split="train")
        report = _fit_extractor(cfg, dataset, data, records, out)
        record.write(out, heldout=report)
        return out / "model.pt"
    from lgvq.data.sources.shapes import ShapesSource
    from lgvq.data.synth import generate

    drawn = jobs.drawn_extractor_images(cfg, dataset)
    out.mkdir(parents=True, exist_ok=True)
    # Drawn beside the model and removed once it is trained. The loader streams the images a batch at a time;
    # the N records (a few hundred bytes each) are held, as a split's are.
    with tempfile.TemporaryDirectory(dir=out, prefix=".synthetic-") as tmp:
        root = generate(Path(tmp) / "generated", n=drawn["n"], size=drawn["size"], seed=drawn["seed"],
                        text_variant=drawn["text_variant"])
        source = ShapesSource(root)
        records = [r for split in source.splits() for r in source.records(split)]
        report = _fit_extractor(cfg, dataset, records_images(cfg, dataset, records), records, out)
    record.write(out, heldout=report, synthetic_images=drawn)
    return out / "model.pt"


def _fit_extractor(cfg: dict[str, Any], dataset: str, data, records, out: Path) -> dict:
    """Fit shapes-cnn on `data`'s images and their records' attributes (10 % held out) and save it."""
    from lgvq.data.attributes import ATTRIBUTE_NAMES, attribute_vector
    from lgvq.data.loader import image_batches, loader_settings
    from lgvq.metrics.extractors import ImageBatches, train_shapes_cnn

    ev = eval_settings(cfg)
    missing = [r.image_id for r in records if not r.attributes]
    if missing:
        raise ArtifactError(f"dataset '{dataset}' has no ground-truth attributes (e.g. image {missing[0]}): the "
                            "shapes-cnn extractor needs the embedded data; set eval.fid_extractor: inception")
    # Streamed through the loader a batch at a time (the split as floats is ~3 GB at COCO's size, 256 px);
    # the targets, a few bytes per image, are held.
    settings = loader_settings(data_settings(cfg), "cpu")
    x = ImageBatches(len(data), dataset_settings(cfg, dataset).image_size,
                     lambda lists: image_batches(data, lists, **settings, finish=lambda b: b["image"]))
    y = torch.as_tensor(np.stack([attribute_vector(r.attributes["objects"]) for r in records]))
    model, report = train_shapes_cnn(x, y, epochs=ev.shapes_cnn_epochs, seed=ev.mask_eval_seed)
    model.save(out / "model.pt", attribute_names=list(ATTRIBUTE_NAMES), report=report)
    return report


@torch.no_grad()
def reconstruction(cfg: dict[str, Any], dataset: str, tokenizer: str, variant: str, seed: int) -> None:
    """Reconstruction FID/PSNR/SSIM on the first `eval_images` test images + codebook statistics
    over the whole test split (usage counts codes used at least once over the split)."""
    from lgvq.metrics.codebook import code_counts_by_chunks, statistics_from_counts
    from lgvq.pipeline.downstream import convergence_extra

    R = cfg["results_dir"]
    out = paths.eval_dir(R, "reconstruction", dataset, tokenizer, variant, seed)
    record = RunRecord("eval/reconstruction", jobs.reconstruction(cfg, dataset, tokenizer, variant, seed), seed=seed)
    dev = pick_device(cfg)
    # Every input is loaded before anything is written: missing FID weights or a corrupt code
    # file must not leave fresh reconstructions (or a metrics.json) behind a failed job.
    extractor = fid_extractor(cfg, dataset)
    codes = load_codes(paths.codes_file(R, dataset, tokenizer, variant, seed, "test"))
    model = load_tokenizer(cfg, dataset, tokenizer, variant, seed).to(dev)
    ref = reference_folder(cfg, dataset) if extractor is not None else None
    data, records = eval_images(cfg, dataset, limit=dataset_settings(cfg, dataset).eval_images)
    recon_dir = out / "reconstructions"
    psnr, ssim = reconstruct_to_folder(model, data, records, recon_dir, dev)
    fid = score_fid(recon_dir, ref, extractor, paths.dataset_dir(R, dataset) / "eval" / "fid_cache")
    run = (dataset, tokenizer, variant, seed)
    labels = {"tokenizer_class": tokenizer_settings(cfg, tokenizer).class_, "text_encoder": text_encoder_settings(cfg).name,
              "perceptual": model.describe().get("perceptual")}
    MetricRecord(
        "reconstruction", *run,
        metrics={**fid.metrics, "PSNR": float(psnr.mean()), "SSIM": float(ssim.mean())},
        notes={**fid.notes,
               "PSNR": f"per image, RGB, uint8, data_range 255, mean over {len(psnr)} test images",
               "SSIM": f"per image, RGB, uint8, data_range 255, mean over {len(ssim)} test images"},
        labels=labels, not_computed=fid.not_computed,
        extra=convergence_extra(paths.tokenizer_dir(R, dataset, tokenizer, variant, seed))).write(out)  # its training
    counts = code_counts_by_chunks(codes, model.codebook_size)  # the split's file read a chunk at a time
    stats = statistics_from_counts(counts)
    run_at = (R, dataset, tokenizer, variant, seed)
    cb_dir = paths.eval_dir(R, "codebook", dataset, tokenizer, variant, seed)
    MetricRecord(
        "codebook", *run,
        metrics={"usage": stats["usage"], "perplexity": stats["perplexity"], "dead_codes": stats["dead_codes"]},
        notes={"usage": f"fraction of the {model.codebook_size} codes used at least once over all "
                        f"{codes.shape[0]} test images ({codes.shape[1]}x{codes.shape[2]} codes each)"},
        labels=labels).write(cb_dir)
    _codebook_figures(model, counts, paths.codebook_usage_plot_file(*run_at), paths.codebook_picture_file(*run_at))
    record.write(out, fid=fid.description)
    record.write(cb_dir)


@torch.no_grad()
def reconstruct_to_folder(model, data, records, folder: Path, dev, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Reconstruct `data` `batch` images at a time into PNGs in `folder` (named by image id) and
    score each image: -> per-image (PSNR, SSIM). Only a batch of images is held; the folder
    replaces an earlier one once every batch is written (the FID reads the images back from disk)."""
    from lgvq.metrics.image import psnr_per_image, ssim_per_image

    psnr, ssim = [], []
    with png_folder(folder) as tmp:
        for i in range(0, len(data), batch):
            x = torch.stack([data[j]["image"] for j in range(i, min(i + batch, len(data)))]).to(dev)
            real_u8, rec_u8 = to_uint8(x.cpu()), to_uint8(model(x).x_rec.clamp(-1, 1).cpu())
            psnr.append(psnr_per_image(real_u8, rec_u8))
            ssim.append(ssim_per_image(real_u8, rec_u8))
            write_pngs(rec_u8, [f"{r.image_id:012d}" for r in records[i : i + batch]], tmp)
    return np.concatenate(psnr), np.concatenate(ssim)


def _codebook_figures(model, counts: np.ndarray, usage_png: Path, picture_png: Path) -> None:
    """Fig. 7: usage histogram and each code decoded as a 1x1 latent, tiled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lgvq.tokenizers.stats import codebook_picture

    fig, ax = plt.subplots(figsize=(6, 2.5))
    ax.bar(np.arange(len(counts)), np.sort(counts)[::-1], width=1.0)
    ax.set_xlabel("code (sorted by frequency)")
    ax.set_ylabel("count on test split")
    ax.set_title(f"codebook usage: {np.mean(counts > 0):.1%} of {len(counts)} codes")
    fig.tight_layout()
    with atomic_path(usage_png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    codebook_picture(model, picture_png)


@torch.no_grad()
def text_alignment(cfg: dict[str, Any], dataset: str, tokenizer: str, variant: str, seed: int) -> None:
    """Masked-word Recall@1 (Mask-1, Mask-3), word–code similarity MSE, image->text retrieval."""
    from lgvq.lg import evaluate as lg_eval

    R = cfg["results_dir"]
    out = paths.eval_dir(R, "text_alignment", dataset, tokenizer, variant, seed)
    record = RunRecord("eval/text_alignment", jobs.text_alignment(cfg, dataset, tokenizer, variant, seed), seed=seed)
    dev = pick_device(cfg)
    model, lg = load_tokenizer(cfg, dataset, tokenizer, variant, seed, with_lg=True)
    model, lg = model.to(dev), (lg.to(dev) if lg is not None else None)
    cache, text = text_cache(cfg, dataset), text_encoder_settings(cfg)
    encoder = None
    if lg is not None and lg.weights["mtp"] > 0:  # the leak-free masked-word protocol re-encodes captions
        encoder = frozen_text_encoder(cfg, dev)
    metrics, notes = lg_eval.evaluate_alignment(
        model, lg, cache, train=eval_images(cfg, dataset, split="train"), test=eval_images(cfg, dataset, split="test"),
        seed=eval_settings(cfg).mask_eval_seed, device=dev, encoder=encoder, mtp_input=lg_settings(cfg).mtp_input)
    MetricRecord("text_alignment", dataset, tokenizer, variant, seed, metrics, notes,
                 labels={"text_encoder": text.name, "lg_module": lg is not None}).write(out)
    record.write(out)
