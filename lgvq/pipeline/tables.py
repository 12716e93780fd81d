"""`lgvq tables build` and `lgvq report`: glue between the DAG's metric files and lgvq.tables.

The list of metric files a table reads comes from lgvq.pipeline.plan (the same list the
Snakefile uses as the table rule's input), so a table never silently picks up stale files
from runs that are no longer in the config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator

from lgvq.config import load_config
from lgvq.io import read_json
from lgvq.pipeline import paths, plan
from lgvq.settings import references_settings


def _dataset_columns(cfg: dict[str, Any]) -> dict[str, str | None]:
    return {name: entry["paper_column"] for name, entry in cfg["datasets"].items()}


def weights_provenance(cfg: dict[str, Any]) -> dict[str, str]:
    """Rows of tokenizers not trained from scratch say so: a frozen checkpoint, or fine-tuned from one."""
    return {name: "frozen" if t.get("checkpoint") else "fine-tuned"
            for name, t in cfg["tokenizers"].items() if t.get("checkpoint") or t.get("init_from")}


def build_tables(config_path: str | Path, tables: Iterable[str] | None, out_dir: Path) -> list[Path]:
    from lgvq.tables.build import write_table
    from lgvq.tables.dose import write_dose_response

    writers = {plan.DOSE_RESPONSE_TABLE: write_dose_response}  # a table with more than the md/csv/tex (its plot)
    cfg = load_config(config_path)
    written: list[Path] = []
    for table in (list(tables) if tables else plan.table_ids(cfg)):
        files = plan.table_inputs(cfg, table)
        records = []
        for f in files:
            rec = read_json(f)
            rec["_source"] = str(f)
            records.append(rec)
        kwargs: dict[str, Any] = {"dataset_columns": _dataset_columns(cfg), "experiment": cfg["name"],
                                  "provenance": weights_provenance(cfg), "execution": execution_notes(cfg, table),
                                  "machines": machines_note(cfg, table)}
        if table not in writers:  # the dose-response table has no baseline rows to fall short of
            kwargs["budget_note"] = references_settings(cfg).budget_note
        written.extend(writers.get(table, write_table)(table, records, out_dir, **kwargs))
    return written


def job_manifests(cfg: dict[str, Any], table: str) -> set[Path]:
    """The manifests of every job a table's numbers come from: the job beside each metric file and
    the training and encoding of the tokenizer run it evaluates."""
    manifests: set[Path] = set()
    for m in plan.table_metric_inputs(cfg, table):
        manifests.add(m.path.parent / "manifest.json")
        if m.run is not None:
            r = m.run
            tokdir = paths.tokenizer_dir(cfg["results_dir"], r.dataset, r.tokenizer, r.variant, r.seed)
            manifests |= {tokdir / "manifest.json", tokdir / "codes" / "manifest.json"}
    return manifests


def job_records(cfg: dict[str, Any], table: str) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(manifest path, manifest) of each job behind a table that has run, in path order."""
    for m in sorted(job_manifests(cfg, table)):
        if m.is_file():
            yield m, read_json(m)


def execution_notes(cfg: dict[str, Any], table: str) -> dict[str, str]:
    """{how it executed: an example job} for the jobs behind a table that did not run as fp32 eager
    (bf16 autocast, TF32, compile, ...), so a table says when its numbers are not all fp32 eager."""
    from lgvq.train.precision import execution_note

    notes: dict[str, str] = {}
    for m, rec in job_records(cfg, table):
        note = execution_note(rec.get("execution"))
        if note:
            notes.setdefault(note, f"{rec.get('step', '?')} in {m.parent}")
    return notes


def machines_note(cfg: dict[str, Any], table: str) -> str | None:
    """The table's note when jobs of one kind behind it (the manifest's `step`: tokenizer training, an
    evaluation...) ran on more than one device model (a results dir resumed on another machine, a cluster of
    mixed nodes): fp32 numbers repeat on one model only, so a difference between rows, or a paired Δ, may include
    the machine. Kinds on different devices by design (training on GPUs, evaluation on CPU nodes) are not a mix.
    None when no kind is mixed (or no model is recorded)."""
    from lgvq.tables.provenance import device_model

    by_step: dict[str, dict[str, int]] = {}
    for _, rec in job_records(cfg, table):
        if model := device_model(rec):
            models = by_step.setdefault(str(rec.get("step", "?")), {})
            models[model] = models.get(model, 0) + 1
    mixed = {step: models for step, models in sorted(by_step.items()) if len(models) > 1}
    if not mixed:
        return None
    listed = "; ".join(f"{step} on " + ", ".join(f"{model} ({n} jobs)" for model, n in sorted(models.items()))
                       for step, models in mixed.items())
    return (f"jobs of one kind ran on more than one device model: {listed}. Training repeats bit for bit on one "
            "model, not across models (README, Reliability and provenance), so differences between rows may include "
            "the machine")


def compute_per_table(cfg: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Device-hours behind each table: {table: {device: hours}}.

    A table's cost is the wall time recorded in the manifests of every job its numbers come
    from: the evaluation (or head / generator) job beside each metric file, and the training
    and encoding of the tokenizer run it evaluates. Jobs shared by several tables count for
    each of them. The device is the CUDA device name a manifest recorded, else "cpu".
    """
    out: dict[str, dict[str, float]] = {}
    seconds: dict[Path, tuple[str, float]] = {}  # manifest -> (device, wall s), read once across tables
    for table in plan.table_ids(cfg):
        manifests = job_manifests(cfg, table)
        hours: dict[str, float] = {}
        for m in sorted(manifests):
            if m not in seconds:
                if not m.is_file():
                    continue
                rec = read_json(m)
                seconds[m] = (rec.get("device", {}).get("cuda_device") or "cpu", float(rec.get("wall_time_s", 0.0)))
            dev, wall = seconds[m]
            hours[dev] = hours.get(dev, 0.0) + wall / 3600
        out[table] = hours
    return out
