"""The experiment matrix: which jobs a config implies and which metric files each table reads.

Functions of the validated config (no torch), shared by the Snakefile (to build the DAG)
and by `lgvq tables build` (to know which records a table is built from). One question looks at
the disk: whether a dataset's source has label maps (`label_maps`: folders only, no image is read).
A table is rebuilt from exactly the files listed here, so `results/tables/<id>.md` pulls in only
what it needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from lgvq.config import dose_variant
from lgvq.downstream.registry import HEADS
from lgvq.pipeline import paths
from lgvq.pipeline.references import Reference, data_seed, data_seeds, enabled_references
from lgvq.settings import references_settings
from lgvq.stage2.registry import STAGE2_TASKS, tasks_by_table
from lgvq.tables.paper import TABLES as PAPER_TABLES

# The paper's tables (lgvq.tables.paper), in the paper's order; `table_ids` adds the tables of
# tasks that bring their own (an understanding task's table id is its name; a second-stage task's
# is its `table_id`).
PAPER_TABLE_IDS = tuple(PAPER_TABLES)



def stage2_table_tasks() -> dict[str, tuple[str, ...]]:
    """Table id -> the second-stage tasks whose records fill it (from the tasks' `table_id`), e.g.
    text_to_image -> (t2i_diffusion, t2i_ar)."""
    return tasks_by_table()


# Tables of ours the paper has none of (lgvq.tables.paper.OWN_TABLES), each behind its config switch.
DOSE_RESPONSE_TABLE = "dose_response"


def table_ids(cfg: dict[str, Any]) -> list[str]:
    """Every table the config builds: the paper's, the dose-response when enabled, then one per enabled
    task without a paper table (a plug-in's own): downstream tasks, then second-stage tasks."""
    extra = [t for t in cfg["downstream"]["tasks"] if t not in PAPER_TABLE_IDS] if cfg["downstream"]["enabled"] else []
    if cfg["stage2"]["enabled"]:
        extra += [STAGE2_TASKS.get(t).table_id for t in cfg["stage2"]["tasks"]]
    own = [DOSE_RESPONSE_TABLE] if cfg["dose_response"]["enabled"] else []
    return list(dict.fromkeys([*PAPER_TABLE_IDS, *own, *extra]))


@dataclass(frozen=True)
class Run:
    dataset: str
    tokenizer: str
    variant: str
    seed: int


def run_seeds(cfg: dict[str, Any], tokenizer: str, seeds: list[int]) -> list[int]:
    """The seeds a tokenizer entry runs on. A seed fixes a tokenizer's training (initialisation, data
    order, LG word masks) and the training of the heads on its codes. A frozen checkpoint has no
    training, so its first-stage numbers are the same on every seed: it runs on the first one only
    and its cells say n=1, instead of one evaluation counted as several seeds (± 0.00)."""
    return list(seeds[:1]) if cfg["tokenizers"][tokenizer].get("checkpoint") else list(seeds)


def tokenizer_runs(cfg: dict[str, Any]) -> Iterator[Run]:
    """Every trained tokenizer: configured variants for all, plus the ablation runs."""
    seen: set[Run] = set()
    main = [Run(ds, tok, v, s) for ds in cfg["datasets"] for tok, e in cfg["tokenizers"].items()
            for v in e["variants"] for s in run_seeds(cfg, tok, cfg["seeds"])]
    for run in [*main, *ablation_runs(cfg), *dose_runs(cfg)]:
        if run not in seen:
            seen.add(run)
            yield run


def ablation_runs(cfg: dict[str, Any]) -> list[Run]:
    """Table 2's runs: base, each ablation variant and +LG of `ablation.tokenizer`, over
    `ablation.seeds` (default: `seeds`)."""
    abl = cfg["ablation"]
    if not abl.get("tokenizer"):
        return []
    seeds = abl.get("seeds") or cfg["seeds"]
    variants = dict.fromkeys(["base", *abl["variants"], "lg"])
    return [Run(ds, abl["tokenizer"], v, s) for ds in cfg["datasets"] for v in variants
            for s in run_seeds(cfg, abl["tokenizer"], seeds)]


def dose_variants(cfg: dict[str, Any]) -> dict[float, str]:
    """{LG weight multiplier: variant} of the dose-response, ascending: x0 is the base run, x1 the +LG run
    every other table has (the same run, not a copy), x10 `lg-x10`."""
    if not cfg["dose_response"]["enabled"]:
        return {}
    multipliers = sorted({0.0, *map(float, cfg["dose_response"]["multipliers"])})
    return {m: dose_variant("lg", m) for m in multipliers}


def dose_runs(cfg: dict[str, Any]) -> list[Run]:
    """The dose-response's runs of `dose_response.tokenizer`, per multiplier and `dose_response.seeds`."""
    dose = cfg["dose_response"]
    if not dose["enabled"]:
        return []
    seeds = run_seeds(cfg, dose["tokenizer"], dose["seeds"] or cfg["seeds"])
    return [Run(ds, dose["tokenizer"], v, s) for ds in cfg["datasets"] for v in dose_variants(cfg).values()
            for s in seeds]


def dose_vqa_runs(cfg: dict[str, Any]) -> list[Run]:
    """The dose runs a VQA head is trained on (the table's downstream column): where VQA runs on the dataset."""
    down = cfg["downstream"]
    if not (cfg["dose_response"]["vqa"] and down["enabled"] and "vqa" in down["tasks"]):
        return []
    allowed = {ds: e.get("downstream_tasks") for ds, e in cfg["datasets"].items()}
    return [r for r in dose_runs(cfg) if allowed[r.dataset] is None or "vqa" in allowed[r.dataset]]


def main_runs(cfg: dict[str, Any], *, expensive: bool = False) -> list[Run]:
    """base / +LG runs of every tokenizer (the rows of most tables)."""
    seeds = cfg["expensive_seeds"] if expensive else cfg["seeds"]
    return [Run(ds, tok, v, s) for ds in cfg["datasets"] for tok, e in cfg["tokenizers"].items()
            for v in e["variants"] if v in ("base", "lg") for s in run_seeds(cfg, tok, seeds)]


def task_runs(cfg: dict[str, Any], stage: str, task: str) -> list[Run]:
    """Runs of a second-stage or downstream task: the stage's tasks, narrowed per dataset by
    `datasets.<name>.<stage>_tasks` (e.g. the paper runs VQA only on MS-COCO) and per task by
    `<stage>.tokenizers.<task>` (e.g. the paper's Table 7 has VQ-GAN rows only)."""
    if not cfg[stage]["enabled"] or task not in cfg[stage]["tasks"]:
        return []
    tokenizers = cfg[stage].get("tokenizers", {}).get(task)
    return [r for r in main_runs(cfg, expensive=True)
            if (cfg["datasets"][r.dataset].get(f"{stage}_tasks") is None or task in cfg["datasets"][r.dataset][f"{stage}_tasks"])
            and (tokenizers is None or r.tokenizer in tokenizers)
            and not (stage == "stage2" and STAGE2_TASKS.get(task).needs_label_maps and semantic_left_out(cfg, r.dataset))]


def label_maps(cfg: dict[str, Any], dataset: str) -> bool | None:
    """Whether the records of `dataset` carry label maps (semantic synthesis' condition); None = cannot
    tell now (a root that is not there yet, which preflight reports; a source that does not say)."""
    ds = cfg["datasets"][dataset]
    return _label_maps(ds["source"], None if ds["root"] is None else str(Path(ds["root"]).expanduser().resolve()))


@lru_cache(maxsize=None)
def _label_maps(source: str, root: str | None) -> bool | None:
    # Cached: the Snakefile asks per run and per rule; opening a source only checks that folders exist.
    from lgvq.data.registry import GENERATED_SOURCES, get_source
    from lgvq.io import ArtifactError

    if root is None:
        return True if source in GENERATED_SOURCES else None  # the generator draws a mask per image
    try:
        return get_source(source, root).has_label_maps()
    except ArtifactError:  # unknown source or a broken root: its own jobs (and preflight) name the problem
        return None


def semantic_left_out(cfg: dict[str, Any], dataset: str) -> bool:
    """Semantic synthesis is left out of a dataset's default stage-2 tasks (`stage2_tasks: null`) when its
    source has no label maps (MS-COCO, CUB, TextCaps; MM-CelebA-HQ without CelebAMask-HQ), instead of
    stopping the DAG at `labelmap_vq`. Listed explicitly, it stays, and preflight refuses the run."""
    return cfg["datasets"][dataset].get("stage2_tasks") is None and label_maps(cfg, dataset) is False


def left_out_tasks(cfg: dict[str, Any]) -> list[str]:
    """One line per dataset whose default stage-2 tasks lose semantic synthesis (printed when the DAG is built)."""
    from lgvq.stage2.registry import label_map_tasks

    dropped = [t for t in label_map_tasks() if t in cfg["stage2"]["tasks"]]
    if not cfg["stage2"]["enabled"] or not dropped:
        return []
    names = ", ".join(f"'{t}'" for t in dropped)
    return [f"semantic synthesis needs label maps: datasets.{name} (source '{ds['source']}', root {ds['root']}) has "
            f"none, so its stage-2 tasks leave {names} out" for name, ds in cfg["datasets"].items()
            if semantic_left_out(cfg, name)]


@dataclass(frozen=True)
class MetricInput:
    """One file a table reads: the evaluation record, and the tokenizer run it evaluates (None for
    the dataset statistics)."""

    path: Path
    run: Run | None = None


def _eval(cfg: dict[str, Any], kind: str, runs: list[Run]) -> list[MetricInput]:
    R = cfg["results_dir"]
    return [MetricInput(paths.metrics_file(R, kind, r.dataset, r.tokenizer, r.variant, r.seed), r) for r in runs]


def table_metric_inputs(cfg: dict[str, Any], table: str) -> list[MetricInput]:
    """The model records of a table, then its reference rows' (baselines and ceilings)."""
    models = model_inputs(cfg, table)
    return models + reference_inputs(cfg, table, [m.run for m in models if m.run is not None])


@dataclass(frozen=True)
class ReferenceJob:
    """One job of a reference: data-only (`tokenizer` None) or for one tokenizer run (base variant)."""

    reference: str
    dataset: str
    tokenizer: str | None
    seed: int


def reference_jobs(cfg: dict[str, Any], table: str, model_runs: list[Run]) -> list[tuple[Reference, ReferenceJob]]:
    """The reference jobs whose records are rows of `table`: its references' (lgvq.pipeline.references), on
    the datasets its models run on; a per-tokenizer one on the base runs among the table's model runs."""
    out = []
    for ref in enabled_references(cfg):
        if table not in ref.tables:
            continue
        if ref.per_tokenizer:
            only = references_settings(cfg).tokenizers
            runs = sorted({(r.dataset, r.tokenizer, r.seed) for r in model_runs
                           if r.variant == "base" and (only is None or r.tokenizer in only)})
            out += [(ref, ReferenceJob(ref.name, ds, tok, seed)) for ds, tok, seed in runs]
        else:
            out += [(ref, ReferenceJob(ref.name, ds, None, seed))
                    for ds in dict.fromkeys(r.dataset for r in model_runs) for seed in data_seeds(cfg, ref)]
    return out


def reference_inputs(cfg: dict[str, Any], table: str, model_runs: list[Run]) -> list[MetricInput]:
    from lgvq.tables.paper import table_spec

    kinds = table_spec(table).kinds
    R, files = cfg["results_dir"], []
    for ref, job in reference_jobs(cfg, table, model_runs):
        run = Run(job.dataset, job.tokenizer, "base", job.seed) if job.tokenizer else None
        files += [MetricInput(paths.reference_metrics_file(R, kind, job.dataset, ref.name, job.tokenizer, job.seed), run)
                  for kind in ref.kinds if kind in kinds]
    return files


def model_inputs(cfg: dict[str, Any], table: str) -> list[MetricInput]:
    """The records of the models' rows of a table (tokenizer runs, their heads and generators)."""
    R = cfg["results_dir"]
    if table == "dataset_stats":
        return [MetricInput(paths.stats_file(R, ds)) for ds in cfg["datasets"]]
    if table in ("reconstruction", "vqct_reconstruction"):
        return _eval(cfg, "reconstruction", main_runs(cfg))
    if table == "codebook_usage":
        return _eval(cfg, "codebook", main_runs(cfg))
    if table == "ablation":
        return _eval(cfg, "reconstruction", ablation_runs(cfg))
    if table in ("masked_word", "word_code_similarity"):
        return _eval(cfg, "text_alignment", main_runs(cfg))
    if table == "vqct_lg":
        return _eval(cfg, "reconstruction", main_runs(cfg)) + _eval(cfg, "vqa", task_runs(cfg, "downstream", "vqa"))
    if table == DOSE_RESPONSE_TABLE:
        runs = dose_runs(cfg)
        return (_eval(cfg, "reconstruction", runs) + _eval(cfg, "text_alignment", runs)
                + _eval(cfg, "vqa", dose_vqa_runs(cfg)))
    by_table = stage2_table_tasks()
    if table in by_table:
        return [f for t in by_table[table] for f in _eval(cfg, paths.stage2_kind(t), task_runs(cfg, "stage2", t))]
    if table in HEADS:  # an understanding task's table reads that task's records
        return _eval(cfg, table, task_runs(cfg, "downstream", table))
    raise KeyError(f"unknown table '{table}' (known: {', '.join(table_ids(cfg))})")


def table_inputs(cfg: dict[str, Any], table: str) -> list[Path]:
    """The files a table is built from (the table rule's input)."""
    return [m.path for m in table_metric_inputs(cfg, table)]


def all_table_inputs(cfg: dict[str, Any]) -> list[Path]:
    return sorted({f for t in table_ids(cfg) for f in table_inputs(cfg, t)})
