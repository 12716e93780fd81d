"""`lgvq report`: the files the HTML report shows, named from the plan (which runs this config has)
and the paths module (where each run's files are), never by globbing the results folder; the
rendering is lgvq.tables.report."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from lgvq.pipeline import paths, plan
from lgvq.pipeline.plan import Run
from lgvq.pipeline.tables import compute_per_table, job_manifests, weights_provenance
from lgvq.tables.names import display_name, variant_suffix
from lgvq.tables.report_inputs import (CurveGroup, CurveRun, ExampleGroup, ExampleRun, PictureGroup, ReportInputs,
                                       RunPictures, SampleGrid, SampleGroup, TableFiles)


def _first_seed(runs: list[Run]) -> list[Run]:
    """One run per (dataset, tokenizer, variant): the first seed, for pictures a person looks at."""
    seen: dict[tuple[str, str, str], Run] = {}
    for r in runs:
        seen.setdefault((r.dataset, r.tokenizer, r.variant), r)
    return list(seen.values())


def _line(variant: str) -> str:
    return variant_suffix(variant) or "base"


def _tasks(cfg: dict[str, Any], stage: str) -> list[str]:
    return list(cfg[stage]["tasks"]) if cfg[stage]["enabled"] else []


def report_inputs(cfg: dict[str, Any]) -> ReportInputs:
    R = Path(cfg["results_dir"])
    how = weights_provenance(cfg)
    name = lambda tok, var="base": display_name(tok, var, how.get(tok))  # noqa: E731
    tables = tuple(TableFiles(t, paths.table_file(R, t, "md"), paths.table_file(R, t, "csv")) for t in plan.table_ids(cfg))
    main, ablation = plan.main_runs(cfg), plan.ablation_runs(cfg)
    tokenizer_lines = lambda runs: tuple(  # noqa: E731  (one figure, a line per variant)
        CurveRun("", _line(r.variant), r.seed, paths.train_log(paths.tokenizer_dir(R, *_key(r)))) for r in runs)
    curves: list[CurveGroup] = []
    for ds in cfg["datasets"]:
        for tok in cfg["tokenizers"]:
            runs = [r for r in main if r.dataset == ds and r.tokenizer == tok]
            if runs:
                curves.append(CurveGroup(f"curves-{ds}-{tok}", f"{ds} · {name(tok)} tokenizer", tokenizer_lines(runs)))
        runs = [r for r in ablation if r.dataset == ds]
        if runs:
            curves.append(CurveGroup(f"curves-{ds}-ablation", f"{ds} · Table 2's runs ({name(runs[0].tokenizer)} "
                                     "backbone)", tokenizer_lines(runs)))
    for stage, work in (("stage2", paths.stage2_dir), ("downstream", paths.downstream_dir)):
        for task in _tasks(cfg, stage):
            curves += _task_curves(cfg, stage, task, work, name)
    pictures = tuple(PictureGroup(
        f"pictures-{ds}", f"{ds}: reconstructions and codebooks", cfg["datasets"][ds]["image_size"],
        tuple(RunPictures(name(r.tokenizer, r.variant), r.seed, paths.val_grid_file(R, *_key(r)),
                          paths.codebook_picture_file(R, *_key(r)), paths.codes_file(R, *_key(r), "test"),
                          paths.codebook_file(R, *_key(r)))
              for r in _first_seed([r for r in main if r.dataset == ds]))) for ds in cfg["datasets"])
    samples, examples = [], []
    for ds in cfg["datasets"]:
        px = cfg["datasets"][ds]["image_size"]
        for task in _tasks(cfg, "stage2"):
            runs = _first_seed([r for r in plan.task_runs(cfg, "stage2", task) if r.dataset == ds])
            if runs:
                samples.append(SampleGroup(f"samples-{ds}-{task}", f"{ds} · {task}", px, tuple(
                    SampleGrid(name(r.tokenizer, r.variant), r.seed, paths.stage2_sample_grid(R, task, *_key(r)))
                    for r in runs)))
        for task in _tasks(cfg, "downstream"):
            runs = _first_seed([r for r in plan.task_runs(cfg, "downstream", task) if r.dataset == ds])
            if runs:
                examples.append(ExampleGroup(f"examples-{ds}-{task}", task, f"{ds} · {task}", px, tuple(
                    ExampleRun(name(r.tokenizer, r.variant), r.seed, paths.metrics_file(R, task, *_key(r)))
                    for r in runs)))
    manifests = sorted({m for t in plan.table_ids(cfg) for m in job_manifests(cfg, t)})
    return ReportInputs(cfg["name"], R, tables, tuple(curves), pictures, tuple(samples), tuple(examples),
                        tuple(manifests), compute_per_table(cfg))


def _key(r: Run) -> tuple[str, str, str, int]:
    return (r.dataset, r.tokenizer, r.variant, r.seed)


def _task_curves(cfg: dict[str, Any], stage: str, task: str, work: Callable[..., Path],
                 name: Callable[..., str]) -> list[CurveGroup]:
    """One figure per dataset for a second-stage or understanding task: a panel per tokenizer, base and
    +LG overlaid in it."""
    R, out = cfg["results_dir"], []
    runs = plan.task_runs(cfg, stage, task)
    for ds in cfg["datasets"]:
        mine = [r for r in runs if r.dataset == ds]
        if mine:
            what = "second stage" if stage == "stage2" else "head"
            out.append(CurveGroup(f"curves-{ds}-{stage}-{task}", f"{ds} · {task} ({what}, on each tokenizer's codes)",
                                  tuple(CurveRun(name(r.tokenizer), _line(r.variant), r.seed,
                                                 paths.train_log(work(R, task, *_key(r)))) for r in mine)))
    return out


def build_report(cfg: dict[str, Any], out: Path) -> Path:
    from lgvq.tables.report import render_report

    return render_report(report_inputs(cfg), out)
