"""`lgvq <group> <verb>`: every DAG rule is one of these calls.

Pipeline verbs share the selector flags `--config --dataset --tokenizer --variant --seed`
and resolve everything else from the validated config. Errors that a user can fix (bad
config, missing or corrupt input) print one clear line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _selectors(p: argparse.ArgumentParser, *, run: bool = True) -> None:
    p.add_argument("--config", required=True, help="experiment config (YAML, or the DAG's resolved JSON)")
    p.add_argument("--dataset", required=True)
    if run:
        p.add_argument("--tokenizer", required=True)
        p.add_argument("--variant", required=True, help="base | lg | gsa | mtp | mtp-ras | mtp-gsa")
        p.add_argument("--seed", type=int, required=True)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads for this job")


def _run(args: argparse.Namespace) -> tuple:
    return args.dataset, args.tokenizer, args.variant, args.seed


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


def _data_prepare(a):
    from lgvq.pipeline.common import job_config
    from lgvq.pipeline.data import prepare

    print(prepare(job_config(a.config, dataset=a.dataset), a.dataset))


def _data_stats(a):
    from lgvq.pipeline.common import job_config
    from lgvq.pipeline.data import stats

    stats(job_config(a.config, dataset=a.dataset), a.dataset, Path(a.out))


def _text_cache(a):
    from lgvq.pipeline.common import job_config
    from lgvq.pipeline.text import build_cache

    build_cache(job_config(a.config, dataset=a.dataset), a.dataset, Path(a.out))


def _tok_train(a):
    from lgvq.pipeline.common import job_config, set_threads
    from lgvq.pipeline.tokenizer import train

    set_threads(a.threads)
    print(train(job_config(a.config, dataset=a.dataset, tokenizer=a.tokenizer), *_run(a)))


def _tok_encode(a):
    from lgvq.pipeline.common import job_config, set_threads
    from lgvq.pipeline.tokenizer import encode

    set_threads(a.threads)
    encode(job_config(a.config, dataset=a.dataset, tokenizer=a.tokenizer), *_run(a))


def _train_extractor(a):
    from lgvq.pipeline.common import job_config, set_threads
    from lgvq.pipeline.evaluate import train_feature_extractor

    set_threads(a.threads)
    train_feature_extractor(job_config(a.config, dataset=a.dataset), a.dataset)


def _eval_reconstruction(a):
    from lgvq.pipeline.common import job_config, set_threads
    from lgvq.pipeline.evaluate import reconstruction

    set_threads(a.threads)
    reconstruction(job_config(a.config, dataset=a.dataset, tokenizer=a.tokenizer), *_run(a))


def _downstream_run(a):
    from lgvq.pipeline.common import job_config, set_threads
    from lgvq.pipeline.downstream import run

    set_threads(a.threads)
    print(run(job_config(a.config, dataset=a.dataset, tokenizer=a.tokenizer), a.task, *_run(a)))


def _stage2_run(a):
    from lgvq.pipeline.common import job_config, set_threads
    from lgvq.pipeline.stage2 import run

    set_threads(a.threads)
    print(run(job_config(a.config, dataset=a.dataset, tokenizer=a.tokenizer), a.task, *_run(a)))


def _labelmap_vq(a):
    from lgvq.pipeline.common import job_config, set_threads
    from lgvq.pipeline.stage2 import train_labelmap_vq

    set_threads(a.threads)
    print(train_labelmap_vq(job_config(a.config, dataset=a.dataset), a.dataset))


def _eval_text_alignment(a):
    from lgvq.pipeline.common import job_config, set_threads
    from lgvq.pipeline.evaluate import text_alignment

    set_threads(a.threads)
    text_alignment(job_config(a.config, dataset=a.dataset, tokenizer=a.tokenizer), *_run(a))


def _tables_build(a):
    from lgvq.pipeline.tables import build_tables

    build_tables(a.config, tables=None if a.all else a.table, out_dir=Path(a.out_dir))


def _report(a):
    from lgvq.pipeline.tables import build_report

    build_report(a.config, Path(a.out))


def _plan_estimate(a):
    from lgvq.config import load_config
    from lgvq.pipeline.estimate import DEFAULT_BENCHMARK, estimate, render

    rows = estimate(load_config(a.config), Path(a.benchmark) if a.benchmark else DEFAULT_BENCHMARK)
    print(render(rows, peak_flops=a.peak_tflops * 1e12, mfu=a.mfu, source=a.config))


def _doctor(a):
    from lgvq.doctor import main_doctor

    return main_doctor(a)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lgvq", description=__doc__.splitlines()[0])
    groups = parser.add_subparsers(dest="group", required=True)

    data = groups.add_parser("data", help="datasets: generate, list, prepare, statistics").add_subparsers(dest="verb", required=True)
    p = data.add_parser("synth", help="generate the embedded 'shapes' dataset in real on-disk formats")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--text-variant", action="store_true", help="render a word in each image (TextCaps analogue)")
    p.set_defaults(fn=_data_synth)
    p = data.add_parser("export-coco", help="re-write a `data synth` folder in the MS-COCO 2014 + COCO-QA + RefCOCOg "
                        "layout (the real-data adapters' path, end to end, without the real data)")
    p.add_argument("--from", dest="src", required=True, help="folder written by `lgvq data synth`")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=_data_export_coco)
    data.add_parser("list", help="registered dataset names").set_defaults(fn=_data_list)
    p = data.add_parser("check", help="counts, missing files, unreadable images, images without captions")
    p.add_argument("name", help="dataset registry name (lgvq data list)")
    p.add_argument("--root", required=True)
    p.add_argument("--split", default=None, help="one split (default: all)")
    p.add_argument("--cache-dir", default=None, help="where derived files go (MM-CelebA-HQ label maps), as datasets.<name>.cache_dir")
    p.set_defaults(fn=_data_check)
    p = data.add_parser("prepare", help="generate (embedded) or check (real root) a configured dataset")
    _selectors(p, run=False)
    p.set_defaults(fn=_data_prepare)
    p = data.add_parser("stats", help="dataset statistics JSON")
    _selectors(p, run=False)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=_data_stats)

    text = groups.add_parser("text", help="frozen text features").add_subparsers(dest="verb", required=True)
    p = text.add_parser("cache", help="encode every caption once (dataset x text encoder)")
    _selectors(p, run=False)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=_text_cache)

    tok = groups.add_parser("tokenizer", help="first stage").add_subparsers(dest="verb", required=True)
    for verb, fn, hlp in (("train", _tok_train, "train (resumes from the last checkpoint)"),
                          ("encode", _tok_encode, "encode every split into code grids")):
        p = tok.add_parser(verb, help=hlp)
        _selectors(p)
        p.set_defaults(fn=fn)

    met = groups.add_parser("metrics", help="metric assets").add_subparsers(dest="verb", required=True)
    p = met.add_parser("train-extractor", help="train the offline FID feature extractor (shapes-cnn)")
    _selectors(p, run=False)
    p.set_defaults(fn=_train_extractor)
    from lgvq.metrics.cli import add_fid_parser

    add_fid_parser(met)

    ev = groups.add_parser("eval", help="first-stage evaluations").add_subparsers(dest="verb", required=True)
    for verb, fn in (("reconstruction", _eval_reconstruction), ("text-alignment", _eval_text_alignment)):
        p = ev.add_parser(verb)
        _selectors(p)
        p.set_defaults(fn=fn)

    s2 = groups.add_parser("stage2", help="second-stage generators on frozen codes").add_subparsers(dest="verb", required=True)
    p = s2.add_parser("run", help="train on the train split's codes, generate for the test conditions, score")
    _selectors(p)
    p.add_argument("--task", required=True, choices=("unconditional", "completion", "semantic", "t2i_diffusion", "t2i_ar"))
    p.set_defaults(fn=_stage2_run)
    p = s2.add_parser("labelmap-vq", help="train the label-map VQ (semantic synthesis' conditioning stage)")
    _selectors(p, run=False)
    p.set_defaults(fn=_labelmap_vq)

    dst = groups.add_parser("downstream", help="understanding heads on frozen codes").add_subparsers(dest="verb", required=True)
    p = dst.add_parser("run", help="train a head on the train split's codes, evaluate on the test split")
    _selectors(p)
    p.add_argument("--task", required=True, choices=("captioning", "vqa", "grounding"))
    p.set_defaults(fn=_downstream_run)

    tab = groups.add_parser("tables", help="the paper's tables").add_subparsers(dest="verb", required=True)
    p = tab.add_parser("build")
    p.add_argument("--config", required=True)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--table", action="append", help="table id (repeatable)")
    g.add_argument("--all", action="store_true")
    p.add_argument("--out-dir", required=True)
    p.set_defaults(fn=_tables_build)

    p = groups.add_parser("report", help="the HTML report")
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=_report)

    pl = groups.add_parser("plan", help="what a config will cost").add_subparsers(dest="verb", required=True)
    p = pl.add_parser("estimate", help="device-hours per job kind, from the DAG's job list and measured FLOPs")
    p.add_argument("--config", required=True)
    p.add_argument("--benchmark", default=None, help="bench_tokenizers.py result with FLOP counts "
                   "(default: benchmarks/results/tokenizers_cpu.json)")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="device peak (default: H100 dense bf16)")
    p.add_argument("--mfu", type=float, default=0.3, help="assumed model-FLOP utilisation")
    p.set_defaults(fn=_plan_estimate)
    p = groups.add_parser("doctor", help="check optional dependencies, weights and data roots")
    p.add_argument("--config", default=None)
    p.set_defaults(fn=_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from lgvq.config import ConfigError
    from lgvq.io import ArtifactError

    try:
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
