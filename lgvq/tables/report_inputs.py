"""What the HTML report shows, as files: named by lgvq.pipeline.report from the plan (which runs the
config has) and lgvq.pipeline.paths (where each run's files are), so the report never globs a
results folder and never shows a stale run of another config. A file listed here that is not on
disk (a run that failed, an output a job does not write) is shown as missing, by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class TableFiles:
    id: str
    md: Path
    csv: Path


@dataclass(frozen=True)
class CurveRun:
    """One run's loss log: a line (`line`, e.g. "+LG") in the panels of `panel` (e.g. a tokenizer's
    name where one figure holds several tokenizers; "" when the figure is one tokenizer's)."""

    panel: str
    line: str
    seed: int
    log: Path


@dataclass(frozen=True)
class CurveGroup:
    id: str
    title: str
    runs: tuple[CurveRun, ...]


@dataclass(frozen=True)
class RunPictures:
    """One tokenizer run's pictures: validation originals over their reconstructions, the codebook
    decoded code by code (Fig. 7), and its test codes (for the usage curve)."""

    label: str
    seed: int
    reconstructions: Path
    codebook: Path
    codes: Path
    codebook_vectors: Path


@dataclass(frozen=True)
class PictureGroup:
    id: str
    title: str
    image_size: int          # px of one image in the grids: the report upscales it to a readable size
    runs: tuple[RunPictures, ...]


@dataclass(frozen=True)
class SampleGrid:
    label: str
    seed: int
    path: Path


@dataclass(frozen=True)
class SampleGroup:
    id: str
    title: str
    image_size: int
    grids: tuple[SampleGrid, ...]


@dataclass(frozen=True)
class ExampleRun:
    label: str
    seed: int
    metrics: Path


@dataclass(frozen=True)
class ExampleGroup:
    id: str
    task: str
    title: str
    image_size: int
    runs: tuple[ExampleRun, ...]


@dataclass(frozen=True)
class ReportInputs:
    experiment: str
    results_dir: Path
    tables: tuple[TableFiles, ...]
    curves: tuple[CurveGroup, ...] = ()
    pictures: tuple[PictureGroup, ...] = ()
    samples: tuple[SampleGroup, ...] = ()
    examples: tuple[ExampleGroup, ...] = ()
    manifests: tuple[Path, ...] = ()
    compute: dict[str, dict[str, float]] = field(default_factory=dict)  # table -> {device: hours}
