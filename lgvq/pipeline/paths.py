"""Where every artifact of the DAG lives. The Snakefile and the `lgvq` verbs both use these,
so a path is spelled once.

    <results>/<dataset>/data/                                  embedded dataset (or a link to the real root)
    <results>/<dataset>/text/<encoder>.npz                     frozen text features, once per dataset x encoder
    <results>/<dataset>/shapes_cnn/                            offline FID feature extractor (embedded data)
    <results>/<dataset>/tokenizers/<tok>/<variant>/seed<s>/    checkpoint.pt, model.pt, log.csv, codes/<split>.npy
    <results>/<dataset>/eval/<kind>/<tok>/<variant>/seed<s>/metrics.json
    <results>/<dataset>/stage2/<task>/<tok>/<variant>/seed<s>/
    <results>/<dataset>/downstream/<task>/<tok>/<variant>/seed<s>/
    <results>/tables/<table>.{csv,md,tex}, <results>/report.html
"""

from __future__ import annotations

from pathlib import Path


def dataset_dir(results: str | Path, dataset: str) -> Path:
    return Path(results) / dataset


def data_dir(results: str | Path, dataset: str) -> Path:
    return dataset_dir(results, dataset) / "data"


def text_cache(results: str | Path, dataset: str, encoder: str) -> Path:
    return dataset_dir(results, dataset) / "text" / f"{encoder}.npz"


def shapes_cnn_dir(results: str | Path, dataset: str) -> Path:
    return dataset_dir(results, dataset) / "shapes_cnn"


def tokenizer_dir(results: str | Path, dataset: str, tokenizer: str, variant: str, seed: int | str) -> Path:
    return dataset_dir(results, dataset) / "tokenizers" / tokenizer / variant / f"seed{seed}"


def codes_file(results: str | Path, dataset: str, tokenizer: str, variant: str, seed: int | str, split: str) -> Path:
    return tokenizer_dir(results, dataset, tokenizer, variant, seed) / "codes" / f"{split}.npy"


def eval_dir(results: str | Path, kind: str, dataset: str, tokenizer: str, variant: str, seed: int | str) -> Path:
    return dataset_dir(results, dataset) / "eval" / kind / tokenizer / variant / f"seed{seed}"


def stage2_dir(results: str | Path, task: str, dataset: str, tokenizer: str, variant: str, seed: int | str) -> Path:
    return dataset_dir(results, dataset) / "stage2" / task / tokenizer / variant / f"seed{seed}"


def downstream_dir(results: str | Path, task: str, dataset: str, tokenizer: str, variant: str, seed: int | str) -> Path:
    return dataset_dir(results, dataset) / "downstream" / task / tokenizer / variant / f"seed{seed}"


def tables_dir(results: str | Path) -> Path:
    return Path(results) / "tables"
