"""`lgvq reference data|run --task <name>`: compute one baseline or ceiling (lgvq.pipeline.references) and
write its MetricRecords (one per record kind it declares) and a manifest beside each.

A reference's function returns {kind: Measured}; this module gives every record the reference's variant
("baseline:<name>" / "ceiling:<name>"), tokenizer ("*" for data-only) and seed, and writes them atomically
only after every kind is computed (a failure leaves no partial set behind).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lgvq.io import ArtifactError
from lgvq.manifest import RunRecord
from lgvq.metrics.record import MetricRecord
from lgvq.pipeline import jobs, paths
from lgvq.pipeline.references import Reference, data_seed, data_seeds, get_reference


@dataclass
class Measured:
    """The content of one record: metric -> value, with how each was computed."""

    metrics: dict[str, float]
    notes: dict[str, str] = field(default_factory=dict)
    labels: dict[str, Any] = field(default_factory=dict)
    not_computed: dict[str, str] = field(default_factory=dict)
    execution: dict[str, Any] | None = None    # how a trained reference's steps ran (the manifest's `execution`)
    training: dict[str, int] | None = None     # a trained reference's LoopState.record() (the manifest's `training`)


Compute = Callable[[dict[str, Any], Reference, str, "str | None", int], dict[str, Measured]]


def _compute(ref: Reference) -> Compute:
    module, name = ref.target.split(":")
    return getattr(importlib.import_module(module), name)


def _run(cfg: dict[str, Any], name: str, dataset: str, tokenizer: str | None, seed: int) -> Path:
    ref = get_reference(name)
    if ref.per_tokenizer != (tokenizer is not None):
        verb = "run --tokenizer ... --variant base --seed ..." if ref.per_tokenizer else "data"
        raise ArtifactError(f"reference '{name}' is {'per tokenizer run' if ref.per_tokenizer else 'data-only'}: "
                            f"use `lgvq reference {verb}`")
    record = RunRecord(f"reference/{name}", jobs.reference(cfg, name, dataset, tokenizer, seed), seed=seed,
                       description=ref.description)
    measured = _compute(ref)(cfg, ref, dataset, tokenizer, seed)
    missing = [k for k in ref.kinds if k not in measured]
    if missing:
        raise RuntimeError(f"reference '{name}' computed no record of kind(s) {missing}")
    R = cfg["results_dir"]
    for kind in ref.kinds:
        m = measured[kind]
        out = paths.reference_dir(R, kind, dataset, name, tokenizer, seed)
        labels = {"reference": ref.description, **m.labels}
        MetricRecord(kind, dataset, ref.record_tokenizer(tokenizer), ref.variant, seed, m.metrics, m.notes,
                     labels=labels, not_computed=m.not_computed).write(out)
        record.write(out, **({"execution": m.execution} if m.execution is not None else {}),
                     **({"training": m.training} if m.training is not None else {}))
    return paths.reference_metrics_file(R, ref.kinds[0], dataset, name, tokenizer, seed)


def run_data(cfg: dict[str, Any], name: str, dataset: str) -> Path:
    """A data-only reference of `dataset` (its record's tokenizer is "*", its seed the evaluation seed)."""
    return _run(cfg, name, dataset, None, data_seed(cfg))


def run_seeded(cfg: dict[str, Any], name: str, dataset: str, seed: int) -> Path:
    """A data-only reference that trains a head, on one of `expensive_seeds` (`seed`)."""
    ref = get_reference(name)
    if seed not in data_seeds(cfg, ref) or not ref.head_seeds:
        raise ArtifactError(f"reference '{name}': --seed {seed} is not one of its seeds {data_seeds(cfg, ref)}"
                            + ("" if ref.head_seeds else " (it trains no head: use `lgvq reference data`)"))
    return _run(cfg, name, dataset, None, seed)


def run_for_tokenizer(cfg: dict[str, Any], name: str, dataset: str, tokenizer: str, variant: str, seed: int) -> Path:
    """A per-tokenizer reference on the base run `tokenizer`/`seed` (its rows compare with that tokenizer's)."""
    if variant != "base":
        raise ArtifactError(f"reference '{name}' is computed on a tokenizer's base runs, not variant '{variant}'")
    return _run(cfg, name, dataset, tokenizer, seed)
