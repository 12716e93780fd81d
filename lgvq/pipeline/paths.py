"""Where every artifact of the DAG lives. The rules (with wildcards such as "{dataset}" in place of
names: workflow/rules/common.smk) and the `lgvq` verbs both use these, so a path is spelled once.

    <results>/<dataset>/data/                                  embedded dataset (or a link to the real root)
    <results>/<dataset>/text/<encoder>.npz                     frozen text features, once per dataset x encoder
    <results>/<dataset>/shapes_cnn/model.pt                    offline FID feature extractor (embedded data)
    <results>/<dataset>/labelmap_vq/model.pt                   semantic synthesis' label-map VQ
    <results>/<dataset>/tokenizers/<tok>/<variant>/seed<s>/    checkpoint.pt, model.pt, log.csv, codes/<split>.npy,
                                                               superseded/<hash>/ (another config's checkpoint)
    <results>/<dataset>/eval/<kind>/<tok>/<variant>/seed<s>/metrics.json
    <results>/<dataset>/eval/<kind>/reference/<name>/<tok|data>/seed<s>/   a baseline/ceiling (lgvq.pipeline.references)
    <results>/<dataset>/stage2/<task>/<tok>/<variant>/seed<s>/
    <results>/<dataset>/downstream/<task>/<tok>/<variant>/seed<s>/
    <results>/tables/<table>.{csv,md,tex}, <results>/report.html
    <results>/logs/<job kind>/<dataset>[-<tok>-<variant>-<seed>].log   each job's stdout and stderr (the rules' `log:`)
"""

from __future__ import annotations

from pathlib import Path

from lgvq.tables.files import table_file as table_file_in

METRICS_NAME = "metrics.json"
TRAIN_LOG_NAME = "log.csv"  # every training job's loss log (lgvq.train.checkpoint.LOG_NAME; a test checks they agree)


def dataset_dir(results: str | Path, dataset: str) -> Path:
    return Path(results) / dataset


def data_dir(results: str | Path, dataset: str) -> Path:
    return dataset_dir(results, dataset) / "data"


def prepared_marker(results: str | Path, dataset: str) -> Path:
    return data_dir(results, dataset) / "prepared.json"


def resized_dir(results: str | Path, dataset: str) -> Path:
    """Every split at the training resolution (datasets.<name>.prepare_resized; lgvq.data.resized)."""
    return data_dir(results, dataset) / "resized"


def stats_file(results: str | Path, dataset: str) -> Path:
    return data_dir(results, dataset) / "stats.json"


def text_cache_stem(encoder: str) -> str:
    """The text cache's file name (no suffix) for `text_encoder.name`: an import path's ':' as '.'."""
    return encoder.replace(":", ".")


def text_cache(results: str | Path, dataset: str, encoder: str) -> Path:
    return dataset_dir(results, dataset) / "text" / f"{text_cache_stem(encoder)}.npz"


def shapes_cnn_dir(results: str | Path, dataset: str) -> Path:
    return dataset_dir(results, dataset) / "shapes_cnn"


def shapes_cnn_model(results: str | Path, dataset: str) -> Path:
    return shapes_cnn_dir(results, dataset) / "model.pt"


def labelmap_vq_dir(results: str | Path, dataset: str) -> Path:
    return dataset_dir(results, dataset) / "labelmap_vq"


def labelmap_vq_model(results: str | Path, dataset: str) -> Path:
    return labelmap_vq_dir(results, dataset) / "model.pt"


def tokenizer_dir(results: str | Path, dataset: str, tokenizer: str, variant: str, seed: int | str) -> Path:
    return dataset_dir(results, dataset) / "tokenizers" / tokenizer / variant / f"seed{seed}"


def codes_file(results: str | Path, dataset: str, tokenizer: str, variant: str, seed: int | str, split: str) -> Path:
    return tokenizer_dir(results, dataset, tokenizer, variant, seed) / "codes" / f"{split}.npy"


def tokenizer_model(results: str | Path, dataset: str, tokenizer: str, variant: str, seed: int | str) -> Path:
    return tokenizer_dir(results, dataset, tokenizer, variant, seed) / "model.pt"


def codebook_file(results: str | Path, dataset: str, tokenizer: str, variant: str, seed: int | str) -> Path:
    return tokenizer_dir(results, dataset, tokenizer, variant, seed) / "codes" / "codebook.npy"


def val_grid_file(results: str | Path, dataset: str, tokenizer: str, variant: str, seed: int | str) -> Path:
    """Validation originals over their reconstructions at the end of training (lgvq.pipeline.tokenizer)."""
    return tokenizer_dir(results, dataset, tokenizer, variant, seed) / "samples_val.png"


def val_step_grid_file(job_dir: str | Path, step: int) -> Path:
    """The same grid at checkpoint `step`, inside the training job's folder."""
    return Path(job_dir) / "val" / f"samples_step{step:07d}.png"


def train_log(job_dir: str | Path) -> Path:
    """The loss log of the training job whose output folder is `job_dir`."""
    return Path(job_dir) / TRAIN_LOG_NAME


def eval_dir(results: str | Path, kind: str, dataset: str, tokenizer: str, variant: str, seed: int | str) -> Path:
    return dataset_dir(results, dataset) / "eval" / kind / tokenizer / variant / f"seed{seed}"


def metrics_file(results: str | Path, kind: str, dataset: str, tokenizer: str, variant: str, seed: int | str) -> Path:
    """The metric record of one evaluation (`kind`: reconstruction, codebook, text_alignment,
    stage2-<task>, or a downstream task)."""
    return eval_dir(results, kind, dataset, tokenizer, variant, seed) / METRICS_NAME


def codebook_picture_file(results: str | Path, dataset: str, tokenizer: str, variant: str, seed: int | str) -> Path:
    """Every code decoded as a 1x1 latent, tiled (Fig. 7; lgvq.pipeline.evaluate)."""
    return eval_dir(results, "codebook", dataset, tokenizer, variant, seed) / "codebook.png"


def codebook_usage_plot_file(results: str | Path, dataset: str, tokenizer: str, variant: str, seed: int | str) -> Path:
    """Codes sorted by their test-split counts, one bar each (lgvq.pipeline.evaluate)."""
    return eval_dir(results, "codebook", dataset, tokenizer, variant, seed) / "codebook_usage.png"


def stage2_kind(task: str) -> str:
    """The evaluation folder (`kind` of eval_dir / metrics_file) of a second-stage task's records."""
    return f"stage2-{task}"


def stage2_sample_grid(results: str | Path, task: str, dataset: str, tokenizer: str, variant: str, seed: int | str) -> Path:
    """The first 16 samples of a second-stage task's evaluation (lgvq.pipeline.stage2)."""
    return eval_dir(results, stage2_kind(task), dataset, tokenizer, variant, seed) / "samples_grid.png"


def reference_dir(results: str | Path, kind: str, dataset: str, name: str, tokenizer: str | None,
                  seed: int | str) -> Path:
    """A baseline's or ceiling's record of `kind` (lgvq.pipeline.references): `tokenizer` None = data-only
    (the segment "data"; the record's tokenizer is "*", which no path holds)."""
    return dataset_dir(results, dataset) / "eval" / kind / "reference" / name / (tokenizer or "data") / f"seed{seed}"


def reference_metrics_file(results: str | Path, kind: str, dataset: str, name: str, tokenizer: str | None,
                           seed: int | str) -> Path:
    return reference_dir(results, kind, dataset, name, tokenizer, seed) / METRICS_NAME


def stage2_dir(results: str | Path, task: str, dataset: str, tokenizer: str, variant: str, seed: int | str) -> Path:
    return dataset_dir(results, dataset) / "stage2" / task / tokenizer / variant / f"seed{seed}"


def downstream_dir(results: str | Path, task: str, dataset: str, tokenizer: str, variant: str, seed: int | str) -> Path:
    return dataset_dir(results, dataset) / "downstream" / task / tokenizer / variant / f"seed{seed}"


def tables_dir(results: str | Path) -> Path:
    return Path(results) / "tables"


def table_file(results: str | Path, table_id: str, ext: str) -> Path:
    """One table's file (`ext`: md, csv, tex; png for the dose-response plot), as lgvq.tables writes it."""
    return table_file_in(tables_dir(results), table_id, ext)


def report_file(results: str | Path) -> Path:
    return Path(results) / "report.html"


# Each job's log (its stdout and stderr: the rules' `log:`), one folder per job kind under <results>/logs.
def logs_dir(results: str | Path) -> Path:
    return Path(results) / "logs"


def dataset_log(results: str | Path, kind: str, dataset: str) -> Path:
    """A once-per-dataset job's log (`kind`: prepare_data, dataset_stats, feature_extractor, labelmap_vq)."""
    return logs_dir(results) / kind / f"{dataset}.log"


def text_cache_log(results: str | Path, dataset: str, encoder: str) -> Path:
    """The text-cache job's log (`encoder`: the cache's stem, text_cache_stem)."""
    return logs_dir(results) / "text_cache" / f"{dataset}-{encoder}.log"


def run_log(results: str | Path, kind: str, dataset: str, tokenizer: str, variant: str, seed: int | str) -> Path:
    """A tokenizer run's job log (`kind`: train_tokenizer, encode_codes, eval_reconstruction, eval_text_alignment)."""
    return logs_dir(results) / kind / f"{dataset}-{tokenizer}-{variant}-{seed}.log"


def task_log(results: str | Path, stage: str, task: str, dataset: str, tokenizer: str, variant: str,
             seed: int | str) -> Path:
    """A second-stage or understanding task's job log on one tokenizer run (`stage`: stage2, downstream)."""
    return logs_dir(results) / stage / f"{task}-{dataset}-{tokenizer}-{variant}-{seed}.log"


def reference_log(results: str | Path, rule: str, dataset: str, tokenizer: str | None, seed: int | str) -> Path:
    """A baseline's or ceiling's job log (`rule`: its Reference.rule; `tokenizer` None = data-only)."""
    return logs_dir(results) / rule / (f"{dataset}-{tokenizer}-{seed}.log" if tokenizer else f"{dataset}-{seed}.log")


def tables_log(results: str | Path) -> Path:
    """The log of the job building every table at once."""
    return logs_dir(results) / "tables.log"


def table_log(results: str | Path, table_id: str) -> Path:
    return logs_dir(results) / f"table-{table_id}.log"


def report_log(results: str | Path) -> Path:
    return logs_dir(results) / "report.log"
