"""`lgvq <group> <verb>`: every DAG rule is one of these calls.

Pipeline verbs share the selector flags `--config --dataset --tokenizer --variant --seed`
and resolve everything else from the validated config. Errors that a user can fix (bad
config, missing or corrupt input) print one clear line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any



def _selectors(p: argparse.ArgumentParser, *, run: bool = True) -> None:
    p.add_argument("--config", required=True, help="experiment config (YAML, or the DAG's resolved JSON)")
    p.add_argument("--dataset", required=True)
    if run:
        p.add_argument("--tokenizer", required=True)
        p.add_argument("--variant", required=True, help="base | lg | gsa | mtp | mtp-ras | mtp-gsa")
        p.add_argument("--seed", type=int, required=True)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads for this job")


@dataclass(frozen=True)
class PipelineVerb:
    """One DAG job kind as a command: `lgvq <group> <verb> --config --dataset [run selectors]`
    calls `target(cfg, [task,] dataset, [tokenizer, variant, seed,] [out])` with the validated config."""

    group: str
    verb: str
    target: str              # "module:function", imported when the verb runs (`lgvq --help` imports no torch)
    help: str
    run: bool = True         # takes --tokenizer --variant --seed
    task: bool = False       # takes --task: a name in the stage's task registry (STAGE2_TASKS, HEADS), checked
                             # by the job once the config, whose plug-ins may add tasks, is loaded
    out: bool = False        # takes --out (a file the job writes)
    prints: bool = False     # prints what the function returns (the path it wrote)
    seed: bool = False       # takes --seed alone (a data-only job that trains)


PIPELINE_VERBS = (
    PipelineVerb("data", "prepare", "lgvq.pipeline.data:prepare",
                 "generate (embedded) or check (real root) a configured dataset", run=False, prints=True),
    PipelineVerb("data", "stats", "lgvq.pipeline.data:stats", "dataset statistics JSON", run=False, out=True),
    PipelineVerb("text", "cache", "lgvq.pipeline.text:build_cache",
                 "encode every caption once (dataset x text encoder)", run=False, out=True),
    PipelineVerb("tokenizer", "train", "lgvq.pipeline.tokenizer:train", "train (resumes from the last checkpoint)",
                 prints=True),
    PipelineVerb("tokenizer", "encode", "lgvq.pipeline.tokenizer:encode", "encode every split into code grids"),
    PipelineVerb("metrics", "train-extractor", "lgvq.pipeline.evaluate:train_feature_extractor",
                 "train the offline FID feature extractor (shapes-cnn)", run=False),
    PipelineVerb("eval", "reconstruction", "lgvq.pipeline.evaluate:reconstruction",
                 "FID/PSNR/SSIM and codebook usage on the test split"),
    PipelineVerb("eval", "text-alignment", "lgvq.pipeline.evaluate:text_alignment",
                 "masked-word recall, word-code similarity, image-to-text retrieval"),
    PipelineVerb("stage2", "run", "lgvq.pipeline.stage2:run",
                 "train on the train split's codes, generate for the test conditions, score",
                 task=True, prints=True),
    PipelineVerb("stage2", "labelmap-vq", "lgvq.pipeline.stage2:train_labelmap_vq",
                 "train the label-map VQ (semantic synthesis' conditioning stage)", run=False, prints=True),
    PipelineVerb("downstream", "run", "lgvq.pipeline.downstream:run",
                 "train a head on the train split's codes, evaluate on the test split", task=True,
                 prints=True),
    # Baselines and ceilings (lgvq.pipeline.references): --task names the reference.
    PipelineVerb("reference", "data", "lgvq.pipeline.reference_jobs:run_data",
                 "a data-only baseline or ceiling row (one per dataset)", run=False, task=True,
                 prints=True),
    PipelineVerb("reference", "seeded", "lgvq.pipeline.reference_jobs:run_seeded",
                 "a data-only row that trains a head, on one of expensive_seeds", run=False, task=True,
                 prints=True, seed=True),
    PipelineVerb("reference", "run", "lgvq.pipeline.reference_jobs:run_for_tokenizer",
                 "a baseline or ceiling row of one tokenizer run (--variant base)", task=True, prints=True),
)


def _pipeline_handler(spec: PipelineVerb):
    def handler(a: argparse.Namespace):
        from lgvq.pipeline.common import job_config, set_threads

        set_threads(a.threads)
        module, name = spec.target.split(":")
        fn = getattr(importlib.import_module(module), name)
        cfg = job_config(a.config, dataset=a.dataset, tokenizer=a.tokenizer if spec.run else None)
        args = [cfg, *([a.task] if spec.task else []), a.dataset,
                *((a.tokenizer, a.variant, a.seed) if spec.run else ()), *([a.seed] if spec.seed else []),
                *([Path(a.out)] if spec.out else [])]
        result = fn(*args)
        if spec.prints:
            print(result)

    return handler


def _add_pipeline_verb(groups: dict[str, Any], spec: PipelineVerb) -> None:
    p = groups[spec.group].add_parser(spec.verb, help=spec.help)
    _selectors(p, run=spec.run)
    if spec.seed and not spec.run:
        p.add_argument("--seed", type=int, required=True)
    if spec.task:
        p.add_argument("--task", required=True, help="a registered task (the config's plug-ins may add some)")
    if spec.out:
        p.add_argument("--out", required=True)
    p.set_defaults(fn=_pipeline_handler(spec))


# --- handlers (imports are lazy: `lgvq --help` must not import torch) -------------------------

def _data_synth(a):
    from lgvq.data.synth import main_synth

    main_synth(a)


def _data_export_coco(a):
    from lgvq.data.coco_layout import export_coco2014

    print(export_coco2014(a.src, a.out))


def _data_list(a):
    from lgvq.data.registry import list_datasets

    for name in list_datasets():
        print(name)


def _data_check(a):
    from lgvq.data.check import check_dataset

    report = check_dataset(a.name, a.root, [a.split] if a.split else None, cache_dir=a.cache_dir)
    print(report.format())
    return 0 if report.ok else 1


def _tokenizer_list(a):
    """Every registered name and, with --config, each entry's class, with where each comes from."""
    from lgvq.tokenizers.registry import list_tokenizers, origin

    cfg = None
    if a.config:
        from lgvq.config import load_config  # imports the config's plug-in modules: their names are listed too

        cfg = load_config(a.config)
    rows = [(name, origin(name)) for name in list_tokenizers()]
    if cfg is not None:
        rows += [(f"tokenizers.{name}", f"class {e['class']}: {origin(e['class'])}")
                 for name, e in cfg["tokenizers"].items()]
    width = max(len(r[0]) for r in rows)
    for name, where in rows:
        print(f"{name:<{width}}  {where}")


def _tables_build(a):
    from lgvq.pipeline.tables import build_tables

    build_tables(a.config, tables=None if a.all else a.table, out_dir=Path(a.out_dir))


def _report(a):
    from lgvq.config import load_config
    from lgvq.pipeline.report import build_report

    build_report(load_config(a.config), Path(a.out))


def _plan_estimate(a):
    from lgvq.config import load_config
    from lgvq.pipeline.estimate import DEFAULT_BENCHMARK, DEFAULT_INPUT_BENCHMARK, estimate, render
    from lgvq.pipeline.resources import job_memory_mb

    rows = estimate(load_config(a.config), Path(a.benchmark) if a.benchmark else DEFAULT_BENCHMARK,
                    Path(a.input_benchmark) if a.input_benchmark else DEFAULT_INPUT_BENCHMARK, memory=job_memory_mb)
    print(render(rows, peak_flops=a.peak_tflops * 1e12, mfu=a.mfu, source=a.config))


def _doctor(a):
    from lgvq.doctor import main_doctor

    return main_doctor(a)


def arg(*flags: str, **kwargs: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    """One `add_argument` call of a tool verb, as data."""
    return flags, kwargs


def either(*args: tuple[tuple[str, ...], dict[str, Any]]) -> tuple[None, tuple]:
    """A required either-or group of `arg`s, in its place among a tool verb's arguments."""
    return None, args


@dataclass(frozen=True)
class ToolVerb:
    """A command that is not a DAG job: `lgvq <group> [verb]` (verb "" = the group itself is the command)
    runs the function of this module named `handler` (looked up when the command runs) with the arguments
    `args` declares (`arg` and `either` entries, in help order)."""

    group: str
    verb: str
    handler: str
    help: str
    args: tuple = ()


TOOL_VERBS = (
    ToolVerb("data", "synth", "_data_synth", "generate the embedded 'shapes' dataset in real on-disk formats", (
        arg("--out", required=True), arg("--n", type=int, default=1000), arg("--size", type=int, default=64),
        arg("--seed", type=int, default=0),
        arg("--text-variant", action="store_true", help="render a word in each image (TextCaps analogue)"))),
    ToolVerb("data", "export-coco", "_data_export_coco",
             "re-write a `data synth` folder in the MS-COCO 2014 + COCO-QA + RefCOCOg layout (the real-data "
             "adapters' path, end to end, without the real data)", (
                 arg("--from", dest="src", required=True, help="folder written by `lgvq data synth`"),
                 arg("--out", required=True))),
    ToolVerb("data", "list", "_data_list", "registered dataset names"),
    ToolVerb("data", "check", "_data_check", "counts, missing files, unreadable images, images without captions", (
        arg("name", help="dataset registry name (lgvq data list)"), arg("--root", required=True),
        arg("--split", default=None, help="one split (default: all)"),
        arg("--cache-dir", default=None, help="where derived files go (MM-CelebA-HQ label maps), as datasets.<name>.cache_dir"))),
    ToolVerb("tokenizer", "list", "_tokenizer_list",
             "tokenizer names and where each comes from (built-in, plug-in module, entry point, import path)", (
                 arg("--config", default=None, help="also load its plug-ins and list its tokenizer entries"),)),
    ToolVerb("tables", "build", "_tables_build", "", (
        arg("--config", required=True),
        either(arg("--table", action="append", help="table id (repeatable)"), arg("--all", action="store_true")),
        arg("--out-dir", required=True))),
    ToolVerb("report", "", "_report", "the HTML report", (arg("--config", required=True), arg("--out", required=True))),
    ToolVerb("plan", "estimate", "_plan_estimate", "device-hours per job kind, from the DAG's job list and measured FLOPs", (
        arg("--config", required=True),
        arg("--benchmark", default=None, help="bench_tokenizers.py result with FLOP counts "
            "(default: benchmarks/results/tokenizers_cpu.json)"),
        arg("--input-benchmark", default=None, help="bench_input.py result with the input pipeline's images/s "
            "(default: benchmarks/results/input_pipeline_cpu.json; absent: an assumed constant, said so)"),
        arg("--peak-tflops", type=float, default=989.0, help="device peak (default: H100 dense bf16)"),
        arg("--mfu", type=float, default=0.3, help="assumed model-FLOP utilisation"))),
    ToolVerb("doctor", "", "_doctor", "check optional dependencies, weights and data roots", (arg("--config", default=None),)),
)

# The command groups, in `lgvq --help` order, with their help (a group without verbs is one command).
GROUPS = (("data", "datasets: generate, list, prepare, statistics"), ("text", "frozen text features"),
          ("tokenizer", "first stage"), ("metrics", "metric assets"), ("eval", "first-stage evaluations"),
          ("stage2", "second-stage generators on frozen codes"), ("downstream", "understanding heads on frozen codes"),
          ("reference", "baseline and ceiling rows of the tables"), ("tables", "the paper's tables"),
          ("report", "the HTML report"), ("plan", "what a config will cost"),
          ("doctor", "check optional dependencies, weights and data roots"))


def _add_tool_verb(groups: dict[str, Any], top: Any, spec: ToolVerb) -> None:
    if spec.verb:
        p = groups[spec.group].add_parser(spec.verb, **({"help": spec.help} if spec.help else {}))
    else:
        p = top[spec.group]
    for flags, kwargs in spec.args:
        if flags is None:  # an `either` group
            g = p.add_mutually_exclusive_group(required=True)
            for inner_flags, inner_kwargs in kwargs:
                g.add_argument(*inner_flags, **inner_kwargs)
        else:
            p.add_argument(*flags, **kwargs)
    p.set_defaults(fn=lambda a, name=spec.handler: globals()[name](a))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lgvq", description=__doc__.splitlines()[0])
    groups = parser.add_subparsers(dest="group", required=True)
    single = {spec.group for spec in TOOL_VERBS if not spec.verb}  # commands without verbs
    top = {name: groups.add_parser(name, help=hlp) for name, hlp in GROUPS}
    sub = {name: p.add_subparsers(dest="verb", required=True) for name, p in top.items() if name not in single}
    for spec in PIPELINE_VERBS:  # every DAG rule's command
        _add_pipeline_verb(sub, spec)
    for spec in TOOL_VERBS:
        _add_tool_verb(sub, top, spec)
    from lgvq.metrics.cli import add_fid_parser

    add_fid_parser(sub["metrics"])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from lgvq.config import ConfigError
    from lgvq.io import ArtifactError

    try:
        from lgvq.heap import start_heap_trimmer

        start_heap_trimmer()  # before the job allocates: see lgvq/heap.py (LGVQ_MALLOC_TRIM_S)
        rc = args.fn(args)
    except (ConfigError, ArtifactError, FileNotFoundError) as e:
        print(f"lgvq: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        # An OS error on a named path (permission denied, not a directory, disk full outside the
        # atomic writers) is an environment problem the message already explains; others propagate.
        if e.filename is None:
            raise
        print(f"lgvq: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C outside a training loop (evaluation, encoding): every output is written atomically,
        # so nothing half-written is left; one line instead of a traceback. 130 = 128 + SIGINT.
        print("lgvq: interrupted (SIGINT); no partial output was kept, run the same command again", file=sys.stderr)
        return 130
    except Exception as e:
        # Two ways a training loop stops that the user acts on, matched via sys.modules so that this
        # module never imports torch; anything else propagates with its traceback.
        # - a NaN/inf loss (the step and the term are in the message): status 2 like the other
        #   user-fixable errors (lower the lr, check the data);
        # - SIGINT/SIGTERM after a checkpoint was written: 128 + the signal number, as a shell
        #   reports a signalled process.
        loop = sys.modules.get("lgvq.train.loop")
        if loop is not None and isinstance(e, loop.NonFiniteLossError):
            print(f"lgvq: error: {e}", file=sys.stderr)
            return 2
        if loop is not None and isinstance(e, loop.TrainingInterrupted):
            print(f"lgvq: {e}", file=sys.stderr)
            return 128 + e.signum
        raise
    return int(rc or 0)


if __name__ == "__main__":
    raise SystemExit(main())
