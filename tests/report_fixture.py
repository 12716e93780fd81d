"""A small results tree for the report tests: two tokenizers (the paper's vqgan and a user's `mine`) x
base / +LG x two seeds on one dataset, with the files the report shows, written where
lgvq.pipeline.paths says the DAG writes them, plus their tables (lgvq.tables.build)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lgvq.config import validate_config
from lgvq.pipeline import paths, plan
from lgvq.tables.build import write_table

IMAGE_PX = 16
TOKENIZERS = ("vqgan", "mine")


def _png(path: Path, width: int, height: int, seed: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="PNG")


def _manifest(folder: Path, step: str, seconds: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps({
        "step": step, "config_hash": "0123456789abcdef", "git": {"revision": "a" * 40, "dirty": False},
        "versions": {"torch": "2.14.1", "lgvq": "0.1"}, "device": {}, "wall_time_s": seconds, "peak_rss_mb": 100.0,
        "execution": {"precision": "fp32"}}))


def make_results(root: Path, *, with_stale_run: bool = True) -> dict:
    """Write the tree under `root`; returns the validated config."""
    cfg = validate_config({
        "name": "fixture", "results_dir": str(root / "results"), "seeds": [0, 1],
        "datasets": {"shapes": {"source": "shapes", "image_size": IMAGE_PX}},
        "tokenizers": {t: {"class": "vqgan"} for t in TOKENIZERS}, "ablation": {"tokenizer": None}})
    R = cfg["results_dir"]
    records = []
    for t_i, tok in enumerate(TOKENIZERS):
        for v_i, variant in enumerate(("base", "lg")):
            for seed in (0, 1):
                tokdir = paths.tokenizer_dir(R, "shapes", tok, variant, seed)
                steps = np.arange(1, 301)
                loss = 1.0 / np.sqrt(steps) + 0.02 * seed + 0.05 * v_i
                rows = ["step,rec,loss,val_loss"] + [
                    f"{s},{0.8 * x:.5f},{x:.5f},{(x + 0.01) if s % 50 == 0 else ''}" for s, x in zip(steps, loss)]
                tokdir.mkdir(parents=True, exist_ok=True)
                paths.train_log(tokdir).write_text("\n".join(rows) + "\n")
                grid = paths.val_grid_file(R, "shapes", tok, variant, seed)
                _png(grid, 8 * (IMAGE_PX + 2) + 2, 2 * (IMAGE_PX + 2) + 2, seed)  # 2 rows of 8, padding 2
                _png(paths.codebook_picture_file(R, "shapes", tok, variant, seed), 19, 19, seed + 10)
                codes = paths.codes_file(R, "shapes", tok, variant, seed, "test")
                codes.parent.mkdir(parents=True, exist_ok=True)
                np.save(codes, np.random.default_rng(seed).integers(0, 8 + 8 * v_i, (20, 4, 4)))
                np.save(paths.codebook_file(R, "shapes", tok, variant, seed), np.zeros((32, 4), np.float32))
                _manifest(tokdir, "train_tokenizer", 30.0)
                ev = paths.eval_dir(R, "reconstruction", "shapes", tok, variant, seed)
                _manifest(ev, "eval/reconstruction", 3.0)
                records.append({"kind": "reconstruction", "dataset": "shapes", "tokenizer": tok, "variant": variant,
                                "seed": seed,
                                "metrics": {"PSNR": 18.0 + t_i + v_i + 0.3 * seed, "SSIM": 0.5 + 0.01 * seed}})
    if with_stale_run:  # a run of another config left in the folder: the report must not show it
        stale = paths.tokenizer_dir(R, "shapes", "stale_tok", "base", 0)
        stale.mkdir(parents=True)
        paths.train_log(stale).write_text("step,loss\n1,1.0\n")
    for table in plan.table_ids(cfg):  # every table, as `lgvq tables build --all` writes them
        write_table(table, [] if table == "dataset_stats" else records, paths.tables_dir(R),
                    dataset_columns={"shapes": None}, experiment="fixture")
    return cfg
