"""Bad-input catalogue, config errors (issue 12): a wrong key, value, name or selector is refused
by `lgvq` with exit status 2 and one line naming the key, before any output is touched."""

from __future__ import annotations

import copy
import os
import re
import subprocess

import pytest
import torch
from bad_inputs_kit import BIN, CONFIG, RUN, catalogue, Env, p, set_key, write_config

from lgvq.cli import main

CASES, case = catalogue()


# Wrong type or out-of-range values, several keys: (dotted key, value, expected message).
BAD_VALUES = [
    ("train.steps", "ten", r"train\.steps: 'ten' is not of type 'integer'"),
    ("train.lr", -0.1, r"train\.lr: -0\.1 is less than or equal to the minimum of 0"),
    ("train.betas", [0.5], r"train\.betas: \[0\.5\] is too short"),
    ("lg.dropout", 1.5, r"lg\.dropout: 1\.5 is greater than the maximum of 1"),
    ("datasets.shapes.image_size", 4, r"datasets\.shapes\.image_size: 4 is less than the minimum of 8"),
    ("datasets.shapes.lg_weights.gsa", -1, r"datasets\.shapes\.lg_weights\.gsa: -1 is less than the minimum of 0"),
    ("seeds", [-1], r"seeds\.0: -1 is less than the minimum of 0"),
    ("device", "tpu", r"device: 'tpu' is not one of \['auto', 'cpu', 'cuda'\]"),
    ("eval.fid_extractor", "vgg", r"eval\.fid_extractor: 'vgg' is not one of"),
    ("ablation.tokenizer", "vqct", r"ablation\.tokenizer: 'vqct' is not a key of `tokenizers`"),
]


def _bad_value_case(key, value, message):
    def check(e: Env) -> None:
        e.cli("data", "prepare", patch=set_key(key, value), run=["--dataset", "shapes"], expect=message,
              protect=(e.res / "data" / "prepared.json",))
    check.__name__ = f"bad_value[{key}={value!r}]"
    return check


for _k, _v, _m in BAD_VALUES:
    case(_bad_value_case(_k, _v, _m))


@case
def token_limit_above_the_encoders(e: Env) -> None:
    e.cli("data", "prepare", patch=set_key("text_encoder.max_length", 100), run=["--dataset", "shapes"],
          expect=r"text_encoder\.max_length: 100 is greater than the maximum of 77",
          protect=(e.res / "data" / "prepared.json",))


@case
def unknown_tokenizer_class(e: Env) -> None:
    e.cli("tokenizer", "train", patch=set_key("tokenizers.vqvae.class", "vqvea"), run=[*RUN[:-1], "5"],
          expect=r"tokenizers\.vqvae\.class: unknown tokenizer 'vqvea' \(registered: .*vqvae",
          absent=(e.res / "tokenizers" / "vqvae" / "lg" / "seed5",))


@case
def unknown_tokenizer_selector(e: Env) -> None:
    e.cli("tokenizer", "train", run=["--dataset", "shapes", "--tokenizer", "magvit", "--variant", "lg", "--seed", "0"],
          expect=r"tokenizers\.magvit: not in the config \(configured: .*vqvae")


@case
def unknown_tokenizer_parameter(e: Env) -> None:
    e.cli("tokenizer", "train", patch=set_key("tokenizers.vqvae.params.n_embeds", 64), run=[*RUN[:-1], "5"],
          expect=r"tokenizers\.vqvae\.params: unknown parameter\(s\) \['n_embeds'\]",
          absent=(e.res / "tokenizers" / "vqvae" / "lg" / "seed5",))


@case
def unknown_dataset_selector(e: Env) -> None:
    e.cli("data", "prepare", run=["--dataset", "cub"], expect=r"datasets\.cub: not in the config \(configured: shapes\)")


@case
def unknown_dataset_source(e: Env) -> None:
    e.cli("data", "prepare", patch=set_key("datasets.shapes.source", "shapez"), run=["--dataset", "shapes"],
          expect=r"datasets\.shapes\.source: unknown dataset source 'shapez' \(registered: .*shapes",
          protect=(e.res / "data" / "prepared.json",))


@case
def unknown_variant(e: Env) -> None:
    e.cli("tokenizer", "train", run=[*RUN[:5], "lg-all", "--seed", "0"], expect=r"unknown variant 'lg-all'",
          protect=(e.tok / "checkpoint.pt",))


@case
def unknown_config_key(e: Env) -> None:
    e.cli("tokenizer", "train", patch=set_key("train.stpes", 10),
          expect=r"train: Additional properties are not allowed \('stpes' was unexpected\)",
          protect=(e.tok / "checkpoint.pt",))


@case
def unknown_top_level_config_key(e: Env) -> None:
    e.cli("data", "prepare", patch=set_key("seed", 3), run=["--dataset", "shapes"],
          expect=r"<top level>: Additional properties are not allowed \('seed' was unexpected\)")


@case
def unparsable_config_file(e: Env) -> None:
    bad = e.dir / "broken.yaml"
    bad.write_text("datasets: {shapes: [unclosed\n")
    e.capsys.readouterr()
    assert main(["data", "prepare", "--config", str(bad), "--dataset", "shapes"]) == 2
    assert re.search(f"cannot parse config {p(bad)}", e.capsys.readouterr().err)


@case
def cuda_requested_without_a_gpu(e: Env) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    e.cli("tokenizer", "train", patch=set_key("device", "cuda"), expect=r"device: 'cuda' requested but no CUDA device",
          protect=(e.tok / "checkpoint.pt",))


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, env):
    CASES[name](env)


def test_catalogue_size():
    import test_bad_artifacts
    import test_bad_data
    import test_bad_runtime

    assert len(CASES) + sum(len(m.CASES) for m in (test_bad_artifacts, test_bad_data, test_bad_runtime)) >= 18


# --- through the real executable -----------------------------------------------------------------

def _lgvq(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "lgvq"), *args], check=False, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_cli_subprocess_exit_status_and_message(tmp_path):
    cfg = copy.deepcopy(CONFIG)
    cfg["train"]["stpes"] = 3
    path = write_config(tmp_path, cfg)
    out = _lgvq("data", "prepare", "--config", str(path), "--dataset", "shapes")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"lgvq: error: invalid config {path}:",
        "  train: Additional properties are not allowed ('stpes' was unexpected)"]
    assert not (tmp_path / "res").exists()
