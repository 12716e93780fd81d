"""`lgvq data prepare|stats`: the data stage of the DAG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lgvq.config import ConfigError
from lgvq.io import atomic_write_json
from lgvq.manifest import RunRecord
from lgvq.pipeline import paths
from lgvq.pipeline.common import dataset_source


def prepare(cfg: dict[str, Any], dataset: str) -> Path:
    """Generate the embedded dataset, or check a real root; record the root in prepared.json."""
    entry = cfg["datasets"][dataset]
    out = paths.data_dir(cfg["results_dir"], dataset)
    record = RunRecord("data/prepare", entry, seed=entry["synth"]["seed"])
    from lgvq.data.registry import list_datasets

    # Checked first: an unknown (e.g. misspelt) source would otherwise be reported as a missing
    # `root`, or as an unknown name without the config key that holds it.
    if entry["source"] not in list_datasets():
        raise ConfigError(f"datasets.{dataset}.source: unknown dataset source '{entry['source']}' "
                          f"(registered: {', '.join(list_datasets())})")
    if entry["root"] is None:
        from lgvq.data.synth import generate

        if entry["source"] not in ("shapes", "shapes-text"):
            raise ConfigError(f"datasets.{dataset}.root: required for source '{entry['source']}' (only the embedded "
                              "'shapes' data can be generated)")
        s = entry["synth"]
        generate(out / "generated", n=s["n"], size=s["size"], seed=s["seed"],
                 text_variant=s["text_variant"] or entry["source"] == "shapes-text")
        root = (out / "generated").resolve()
    else:
        root = Path(entry["root"]).expanduser().resolve()
        if not root.is_dir():
            raise ConfigError(f"datasets.{dataset}.root: directory not found: {root}")
    source = dataset_source(cfg, dataset, root)
    counts = {split: len(source.records(split)) for split in source.splits()}
    record.write(out, root=str(root), counts=counts)
    marker = out / "prepared.json"
    atomic_write_json(marker, {"dataset": dataset, "source": entry["source"], "root": str(root), "counts": counts})
    return marker


def stats(cfg: dict[str, Any], dataset: str, out: Path) -> None:
    from lgvq.data.stats import dataset_statistics

    source = dataset_source(cfg, dataset)
    record = RunRecord("data/stats", cfg["datasets"][dataset])
    atomic_write_json(out, {"kind": "dataset_stats", "dataset": dataset, "source": cfg["datasets"][dataset]["source"],
                            "statistics": dataset_statistics(source)})
    record.write(out.parent, name=out.stem + ".manifest.json", output=str(out))
