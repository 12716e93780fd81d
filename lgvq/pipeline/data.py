"""`lgvq data prepare|stats`: the data stage of the DAG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lgvq.io import atomic_write_json
from lgvq.manifest import RunRecord
from lgvq.pipeline import jobs, paths
from lgvq.pipeline.common import dataset_source
from lgvq.settings import dataset_settings


def prepare(cfg: dict[str, Any], dataset: str) -> Path:
    """Generate the embedded dataset, or check a real root; record the root in prepared.json."""
    entry = dataset_settings(cfg, dataset)
    out = paths.data_dir(cfg["results_dir"], dataset)
    record = RunRecord("data/prepare", jobs.data(cfg, dataset), seed=entry.synth["seed"])
    from lgvq.pipeline.preflight import check_dataset

    check_dataset(cfg, dataset)  # the DAG ran the same checks before planning; a direct call gets them here
    if entry.root is None:
        from lgvq.data.synth import generate

        s = entry.synth
        generate(out / "generated", n=s["n"], size=s["size"], seed=s["seed"],
                 text_variant=s["text_variant"] or entry.source == "shapes-text")
        root = (out / "generated").resolve()
    else:
        root = Path(entry.root).expanduser().resolve()
    source = dataset_source(cfg, dataset, root)
    counts = {split: len(source.records(split)) for split in source.splits()}
    resized = None
    if entry.prepare_resized:
        from lgvq.data.resized import write_resized

        resized = str(write_resized(source, paths.resized_dir(cfg["results_dir"], dataset), size=entry.image_size,
                                    resize_mode=entry.resize_mode, jpeg_draft=entry.jpeg_draft))
    record.write(out, root=str(root), counts=counts, resized=resized)
    marker = paths.prepared_marker(cfg["results_dir"], dataset)
    atomic_write_json(marker, {"dataset": dataset, "source": entry.source, "root": str(root), "counts": counts})
    return marker


def stats(cfg: dict[str, Any], dataset: str, out: Path) -> None:
    from lgvq.data.stats import dataset_statistics

    source = dataset_source(cfg, dataset)
    record = RunRecord("data/stats", jobs.data(cfg, dataset))
    atomic_write_json(out, {"kind": "dataset_stats", "dataset": dataset, "source": dataset_settings(cfg, dataset).source,
                            "statistics": dataset_statistics(source)})
    record.write(out.parent, name=out.stem + ".manifest.json", output=str(out))
