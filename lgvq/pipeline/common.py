"""Glue shared by the pipeline verbs: config loading, threads/device, dataset access."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lgvq.config import ConfigError, load_config, require
from lgvq.io import ArtifactError, read_json
from lgvq.pipeline import paths
from lgvq.settings import dataset_settings


def job_config(path: str | Path, *, dataset: str | None = None, tokenizer: str | None = None) -> dict[str, Any]:
    cfg = load_config(path)
    require(cfg, dataset=dataset, tokenizer=tokenizer)
    return cfg


def set_threads(n: int | None) -> None:
    """Pin intra-op threads to the job's Snakemake `threads` (jobs run side by side). Without a
    number nothing is imported: the data verbs stay torch-free."""
    if n:
        import torch

        torch.set_num_threads(int(n))
        os.environ["LGVQ_THREADS"] = str(n)  # sizes the data loader's workers (lgvq.data.loader)
        os.environ.setdefault("OMP_NUM_THREADS", str(n))


def device(cfg: dict[str, Any]):
    import torch

    want = cfg.get("device", "auto")
    if want == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' requested but no CUDA device is available")
    if want == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(want)


def process_group(cfg: dict[str, Any]):
    """(DistInfo, device) of this training process: one process, or one rank of the group torchrun
    started (a job with `gpus` > 1), each rank on its own GPU when CUDA is used."""
    import torch

    from lgvq.train.distributed import init_from_env

    dist = init_from_env()
    dev = device(cfg)
    if dist.enabled and dev.type == "cuda":
        from lgvq.train.distributed import rank_device_index

        dev = torch.device("cuda", rank_device_index(dist.local_rank, torch.cuda.device_count()))
    return dist, dev


def data_root(cfg: dict[str, Any], dataset: str) -> Path:
    """The dataset root recorded by `lgvq data prepare` (generated data or a real root)."""
    marker = paths.prepared_marker(cfg["results_dir"], dataset)
    if not marker.is_file():
        raise ArtifactError(f"{marker} is missing: run `lgvq data prepare --dataset {dataset}` (or the DAG) first")
    return Path(read_json(marker)["root"])


def dataset_source(cfg: dict[str, Any], dataset: str, root: Path | None = None):
    """The configured source of `dataset` reading `root` (default: the root `data prepare` recorded)."""
    from lgvq.data.registry import get_source
    from lgvq.pipeline.preflight import cache_dir_problem

    ds = dataset_settings(cfg, dataset)
    problem = cache_dir_problem(cfg, dataset)
    if problem:
        raise ConfigError(problem)
    return get_source(ds.source, root or data_root(cfg, dataset), cache_dir=ds.cache_dir)


def image_source(cfg: dict[str, Any], dataset: str):
    """The source tokenizer training and encoding read images from: with `prepare_resized`, the copy
    at the training resolution `data prepare` wrote (lgvq.data.resized; same pixels after the
    dataset's geometry). Other stages keep `dataset_source`: some read an original's size (grounding
    scales its boxes by it)."""
    source = dataset_source(cfg, dataset)
    ds = dataset_settings(cfg, dataset)
    if not ds.prepare_resized:
        return source
    from lgvq.data.resized import ResizedSource

    return ResizedSource(source, paths.resized_dir(cfg["results_dir"], dataset), size=ds.image_size,
                         resize_mode=ds.resize_mode, jpeg_draft=ds.jpeg_draft,
                         key=f"datasets.{dataset}.prepare_resized")
