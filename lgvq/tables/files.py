"""Where a table's files are named, once: `<folder>/<table id>.<ext>` (md, csv, tex; png for a plot).
The table writers (lgvq.tables.build, lgvq.tables.dose) and the pipeline's paths (lgvq.pipeline.paths.table_file,
which the rules and the report use) all call this."""

from __future__ import annotations

from pathlib import Path


def table_file(folder: str | Path, table_id: str, ext: str) -> Path:
    return Path(folder) / f"{table_id}.{ext}"
