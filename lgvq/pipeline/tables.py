"""`lgvq tables build` and `lgvq report`: glue between the DAG's metric files and lgvq.tables.

The list of metric files a table reads comes from lgvq.pipeline.plan (the same list the
Snakefile uses as the table rule's input), so a table never silently picks up stale files
from runs that are no longer in the config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from lgvq.config import load_config
from lgvq.io import read_json
from lgvq.pipeline import paths, plan


def _dataset_columns(cfg: dict[str, Any]) -> dict[str, str | None]:
    return {name: entry["paper_column"] for name, entry in cfg["datasets"].items()}


def build_tables(config_path: str | Path, tables: Iterable[str] | None, out_dir: Path) -> list[Path]:
    from lgvq.tables.build import write_table

    cfg = load_config(config_path)
    written: list[Path] = []
    for table in (list(tables) if tables else plan.TABLE_IDS):
        files = plan.table_inputs(cfg, table)
        records = []
        for f in files:
            rec = read_json(f)
            rec["_source"] = str(f)
            records.append(rec)
        written.extend(write_table(table, records, out_dir, dataset_columns=_dataset_columns(cfg),
                                   experiment=cfg["name"]))
    return written


def build_report(config_path: str | Path, out: Path) -> Path:
    from lgvq.tables.report import build_report as render

    cfg = load_config(config_path)
    R = Path(cfg["results_dir"])
    return render(R, paths.tables_dir(R), out)
