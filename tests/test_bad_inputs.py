"""Bad-input catalogue (issue 12): every broken input gives a clear error that names the file or
the config key, a non-zero exit where it enters through the CLI, and leaves existing outputs as
they were (same bytes, same mtime).

One tiny run is built once per module (data, a text cache from a stand-in encoder, a trained
and encoded tokenizer, the shapes-cnn extractor, a reconstruction evaluation); each case works
on its own copy of it. CLI cases call `lgvq.cli.main` in-process (exit status = its return
value); `test_cli_subprocess_*` check the real `lgvq` executable and exit code once.
"""

from __future__ import annotations

import copy
import errno
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from lgvq.cli import main
from lgvq.io import ArtifactError
from lgvq.text.base import TextEncoder, TextFeatures

BIN = Path(sys.executable).parent
TINY = {"ch": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "z_channels": 8,
        "embed_dim": 8, "n_embed": 16}
CONFIG = {
    "name": "bad-inputs",
    "device": "cpu",
    "seeds": [0],
    "datasets": {"shapes": {"source": "shapes", "synth": {"n": 30, "size": 16, "seed": 0}, "image_size": 16,
                            "eval_images": 3}},
    "text_encoder": {"name": "minilm", "max_length": 30},
    "tokenizers": {"vqvae": {"class": "vqvae", "params": dict(TINY)},
                   "vqgan": {"class": "vqgan", "params": {**TINY, "disc_start": 1, "disc_ch": 8, "disc_layers": 1}}},
    "train": {"steps": 2, "batch_size": 4, "lr": 0.001, "ckpt_every": 1, "log_every": 1},
    "eval": {"shapes_cnn_epochs": 1},
}
RUN = ["--dataset", "shapes", "--tokenizer", "vqvae", "--variant", "lg", "--seed", "0"]


class StandInEncoder(TextEncoder):
    """A deterministic text encoder without model weights (the cache format is what matters here;
    the real MiniLM is exercised by test_text.py and scripts/kill_anywhere.py)."""

    name, model_id, width, max_length, vocab_size, pad_id = "minilm", "stand-in", 16, 30, 50, 0

    def __init__(self) -> None:
        self.table = torch.randn(self.vocab_size, self.width, generator=torch.Generator().manual_seed(0))

    def encode(self, captions: list[str]) -> TextFeatures:
        ids = torch.zeros(len(captions), self.max_length, dtype=torch.long)
        valid = torch.zeros_like(ids, dtype=torch.bool)
        special = torch.zeros_like(valid)
        for i, cap in enumerate(captions):
            toks = [1] + [2 + sum(map(ord, w)) % 48 for w in cap.split()][: self.max_length - 2] + [1]
            ids[i, : len(toks)] = torch.tensor(toks)
            valid[i, : len(toks)] = True
            special[i, [0, len(toks) - 1]] = True
        tokens = self.table[ids]
        return TextFeatures(ids, tokens, valid, special, tokens.mean(1))

    def token_embedding_matrix(self) -> torch.Tensor:
        return self.table


# --- the shared tiny run and per-case copies ------------------------------------------------------

@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    from lgvq.data.registry import get_source
    from lgvq.text.cache import build_text_cache

    root = tmp_path_factory.mktemp("bad_inputs")
    cfg_path = _write_config(root, CONFIG)
    sel = ["--config", str(cfg_path), "--dataset", "shapes"]
    assert main(["data", "prepare", *sel]) == 0
    source = get_source("shapes", root / "res/shapes/data/generated")
    caps = {r.image_id: list(r.captions) for s in source.splits() for r in source.records(s)}
    build_text_cache(caps, StandInEncoder(), root / "res/shapes/text/minilm.npz")
    assert main(["metrics", "train-extractor", *sel]) == 0
    for verb in (["tokenizer", "train"], ["tokenizer", "encode"], ["eval", "reconstruction"]):
        assert main([*verb, *sel, *RUN[2:]]) == 0, verb  # RUN[2:]: the selectors after --dataset
    return root


@dataclass
class Env:
    dir: Path
    capsys: pytest.CaptureFixture
    monkeypatch: pytest.MonkeyPatch

    @property
    def res(self) -> Path:
        return self.dir / "res" / "shapes"

    @property
    def data(self) -> Path:
        return self.res / "data" / "generated"

    @property
    def tok(self) -> Path:
        return self.res / "tokenizers" / "vqvae" / "lg" / "seed0"

    def config(self, patch: Callable[[dict], None] | None = None, name: str = "config.yaml") -> Path:
        cfg = {**copy.deepcopy(CONFIG), "results_dir": str(self.dir / "res")}
        if patch is not None:
            patch(cfg)
        return _write_config(self.dir, cfg, name)

    def cli(self, *argv: str, patch: Callable[[dict], None] | None = None, run: list[str] | None = None,
            expect: str, protect: tuple[Path, ...] = (), absent: tuple[Path, ...] = ()) -> str:
        """Run `lgvq <argv> --config <patched config> <run selectors>`: exit status 2, stderr
        matching `expect`, every `protect` file unchanged and no `absent` path created."""
        before = snapshot(protect)
        self.capsys.readouterr()
        rc = main([*argv, "--config", str(self.config(patch)), *(RUN if run is None else run)])
        err = self.capsys.readouterr().err
        assert rc == 2, f"exit status {rc}, stderr: {err}"
        assert re.search(expect, err), f"{expect!r} not in: {err}"
        # one clear line (after any progress bar output), no traceback
        assert err.count("lgvq: error: ") == 1 and "Traceback" not in err, err
        assert snapshot(protect) == before, "an existing output was modified"
        for path in absent:
            assert not path.exists(), f"{path} was created by a failing command"
        return err


def _write_config(root: Path, cfg: dict, name: str = "config.yaml") -> Path:
    cfg = {"results_dir": str(root / "res"), **cfg}
    path = root / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def snapshot(paths) -> dict[str, tuple[bytes, int]]:
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}


def truncate(path: Path, keep: float) -> None:
    """Keep the first `keep` bytes (an int) or that fraction of the file (a float)."""
    data = path.read_bytes()
    path.write_bytes(data[: keep if isinstance(keep, int) else int(len(data) * keep)])


def p(path: Path) -> str:
    """A path as a regex that must appear in the message."""
    return re.escape(str(path))


@pytest.fixture
def env(base, tmp_path, capsys, monkeypatch) -> Env:
    dst = tmp_path / "run"
    shutil.copytree(base, dst, symlinks=True)
    marker = dst / "res/shapes/data/prepared.json"
    info = json.loads(marker.read_text())
    info["root"] = info["root"].replace(str(base), str(dst))  # the copy reads its own images
    marker.write_text(json.dumps(info))
    return Env(dst, capsys, monkeypatch)


# --- the catalogue ---------------------------------------------------------------------------------

CASES: dict[str, Callable[[Env], None]] = {}


def case(fn: Callable[[Env], None]) -> Callable[[Env], None]:
    CASES[fn.__name__] = fn
    return fn


def _set(key: str, value):
    """A config patch setting a dotted key (created if absent)."""
    def patch(cfg: dict) -> None:
        *parents, last = key.split(".")
        node = cfg
        for k in parents:
            node = node.setdefault(k, {})
        node[last] = value
    return patch


def _train_images(e: Env) -> list[Path]:
    return sorted((e.data / "images" / "train").iterdir())


@case
def unreadable_image(e: Env) -> None:
    bad = _train_images(e)[3]
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    e.cli("tokenizer", "encode", expect=f"unreadable image {p(bad)}",
          protect=(e.tok / "codes" / "train.npy", e.tok / "model.pt"))


@case
def image_without_captions(e: Env) -> None:
    ann = e.data / "annotations" / "captions_val.json"
    coco = json.loads(ann.read_text())
    lonely = coco["images"][0]
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] != lonely["id"]]
    ann.write_text(json.dumps(coco))
    e.cli("data", "prepare", patch=_set("datasets.shapes.root", str(e.data)), run=["--dataset", "shapes"],
          expect=rf"image {lonely['id']} \({lonely['file_name']}\) has no captions in {p(ann)}",
          protect=(e.res / "data" / "prepared.json",))


@case
def empty_split(e: Env) -> None:
    ann = e.data / "annotations" / "captions_test.json"
    ann.write_text(json.dumps({"images": [], "annotations": []}))
    e.cli("data", "prepare", patch=_set("datasets.shapes.root", str(e.data)), run=["--dataset", "shapes"],
          expect=f"empty split 'test': {p(ann)} lists no images", protect=(e.res / "data" / "prepared.json",))


@case
def captions_longer_than_the_token_limit(e: Env) -> None:
    # The cache holds captions tokenised to 30 tokens; the config now allows 16.
    cache = e.res / "text" / "minilm.npz"
    e.cli("tokenizer", "train", patch=_set("text_encoder.max_length", 16),
          expect=rf"text_encoder\.max_length.*{p(cache)}.*30 tokens.*max_length 16",
          protect=(e.tok / "checkpoint.pt", e.tok / "model.pt", cache))


@case
def token_limit_above_the_encoders(e: Env) -> None:
    e.cli("data", "prepare", patch=_set("text_encoder.max_length", 100), run=["--dataset", "shapes"],
          expect=r"text_encoder\.max_length: 100 is greater than the maximum of 77",
          protect=(e.res / "data" / "prepared.json",))


@case
def label_map_with_another_aspect_ratio(e: Env) -> None:
    from PIL import Image

    from lgvq.data.dataset import ImageTextDataset
    from lgvq.data.registry import get_source

    records = get_source("shapes", e.data).records("train")
    rec = records[0]
    Image.new("L", (16, 8)).save(rec.mask_path)  # the image is 16x16
    ds = ImageTextDataset(records, image_size=16, train=True, resize_mode="resize_crop", load_masks=True)
    with pytest.raises(ArtifactError, match=rf"label map {p(rec.mask_path)} is 16x8 but its image {p(rec.path)} is 16x16"):
        ds[0]
    Image.new("L", (8, 8)).save(rec.mask_path)  # same aspect ratio, lower resolution: accepted
    assert ds[0]["mask"].shape == (16, 16)


@case
def unknown_tokenizer_class(e: Env) -> None:
    e.cli("tokenizer", "train", patch=_set("tokenizers.vqvae.class", "vqvea"), run=[*RUN[:-1], "5"],
          expect=r"tokenizers\.vqvae\.class: unknown tokenizer 'vqvea' \(registered: .*vqvae",
          absent=(e.res / "tokenizers" / "vqvae" / "lg" / "seed5",))


@case
def unknown_tokenizer_selector(e: Env) -> None:
    e.cli("tokenizer", "train", run=["--dataset", "shapes", "--tokenizer", "magvit", "--variant", "lg", "--seed", "0"],
          expect=r"tokenizers\.magvit: not in the config \(configured: .*vqvae")


@case
def unknown_tokenizer_parameter(e: Env) -> None:
    e.cli("tokenizer", "train", patch=_set("tokenizers.vqvae.params.n_embeds", 64), run=[*RUN[:-1], "5"],
          expect=r"tokenizers\.vqvae\.params: unknown parameter\(s\) \['n_embeds'\]",
          absent=(e.res / "tokenizers" / "vqvae" / "lg" / "seed5",))


@case
def unknown_dataset_selector(e: Env) -> None:
    e.cli("data", "prepare", run=["--dataset", "cub"], expect=r"datasets\.cub: not in the config \(configured: shapes\)")


@case
def unknown_dataset_source(e: Env) -> None:
    e.cli("data", "prepare", patch=_set("datasets.shapes.source", "shapez"), run=["--dataset", "shapes"],
          expect=r"datasets\.shapes\.source: unknown dataset source 'shapez' \(registered: .*shapes",
          protect=(e.res / "data" / "prepared.json",))


@case
def unknown_variant(e: Env) -> None:
    e.cli("tokenizer", "train", run=[*RUN[:5], "lg-all", "--seed", "0"], expect=r"unknown variant 'lg-all'",
          protect=(e.tok / "checkpoint.pt",))


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
        e.cli("data", "prepare", patch=_set(key, value), run=["--dataset", "shapes"], expect=message,
              protect=(e.res / "data" / "prepared.json",))
    check.__name__ = f"bad_value[{key}={value!r}]"
    return check


for _k, _v, _m in BAD_VALUES:
    case(_bad_value_case(_k, _v, _m))


@case
def unknown_config_key(e: Env) -> None:
    e.cli("tokenizer", "train", patch=_set("train.stpes", 10),
          expect=r"train: Additional properties are not allowed \('stpes' was unexpected\)",
          protect=(e.tok / "checkpoint.pt",))


@case
def unknown_top_level_config_key(e: Env) -> None:
    e.cli("data", "prepare", patch=_set("seed", 3), run=["--dataset", "shapes"],
          expect=r"<top level>: Additional properties are not allowed \('seed' was unexpected\)")


@case
def unparsable_config_file(e: Env) -> None:
    bad = e.dir / "broken.yaml"
    bad.write_text("datasets: {shapes: [unclosed\n")
    e.capsys.readouterr()
    assert main(["data", "prepare", "--config", str(bad), "--dataset", "shapes"]) == 2
    assert re.search(f"cannot parse config {p(bad)}", e.capsys.readouterr().err)


@case
def missing_inception_weights(e: Env) -> None:
    out = e.res / "eval" / "reconstruction" / "vqvae" / "lg" / "seed0"
    e.cli("eval", "reconstruction",
          patch=lambda c: c["eval"].update(fid_extractor="inception", inception_weights=str(e.dir / "nope.pt")),
          expect=rf"eval\.inception_weights: Inception weights for FID not found at '{p(e.dir / 'nope.pt')}'",
          protect=(out / "metrics.json", *sorted((out / "reconstructions").iterdir())))


@case
def missing_clip_text_encoder(e: Env) -> None:
    out = e.res / "text" / "clip.npz"
    e.cli("text", "cache", "--out", str(out),
          patch=lambda c: c.update(text_encoder={"name": "clip", "path": str(e.dir / "clip-vit-b32")}),
          run=["--dataset", "shapes"], expect=rf"text_encoder\.path: .*got '{p(e.dir / 'clip-vit-b32')}'",
          absent=(out,))


@case
def missing_perceptual_weights(e: Env) -> None:
    vgg = e.dir / "vgg16.pth"
    e.cli("tokenizer", "train", patch=_set("tokenizers.vqgan.params.perceptual_weights", str(vgg)),
          run=["--dataset", "shapes", "--tokenizer", "vqgan", "--variant", "base", "--seed", "0"],
          expect=f"perceptual_weights: VGG16 weights not found at {p(vgg)}",
          absent=(e.res / "tokenizers" / "vqgan" / "base" / "seed0" / "checkpoint.pt",))


@case
def missing_frozen_checkpoint(e: Env) -> None:
    frozen = e.dir / "external" / "vqvae.pt"
    e.cli("tokenizer", "train", patch=_set("tokenizers.vqvae.checkpoint", str(frozen)), run=[*RUN[:5], "base", "--seed", "0"],
          expect=rf"tokenizers\.vqvae\.checkpoint: trained tokenizer not found: {p(frozen)}",
          absent=(e.res / "tokenizers" / "vqvae" / "base" / "seed0" / "model.pt",))


@case
def frozen_checkpoint_that_is_a_text_file(e: Env) -> None:
    notes = e.dir / "notes.txt"
    notes.write_text("not weights\n")
    err = e.cli("tokenizer", "train", patch=_set("tokenizers.vqvae.checkpoint", str(notes)), run=[*RUN[:5], "base", "--seed", "0"],
                expect=rf"tokenizers\.vqvae\.checkpoint: {p(notes)} is not a PyTorch checkpoint",
                absent=(e.res / "tokenizers" / "vqvae" / "base" / "seed0" / "model.pt",))
    assert "weights_only" not in err  # torch's advice to load it with code execution is not passed on


@case
def model_file_in_place_of_the_checkpoint(e: Env) -> None:
    ckpt = e.tok / "checkpoint.pt"
    shutil.copy(e.tok / "model.pt", ckpt)
    e.cli("tokenizer", "train", expect=rf"{p(ckpt)} is not a training checkpoint \(missing \[", protect=(ckpt,))


@case
def checkpoint_from_other_model_code(e: Env) -> None:
    # Same config hash, but the saved weights no longer fit the model (the code changed since).
    ckpt = e.tok / "checkpoint.pt"
    payload = torch.load(ckpt, weights_only=True)
    key = next(iter(payload["modules"]["tokenizer"]))
    payload["modules"]["tokenizer"][key] = torch.zeros(1)
    torch.save(payload, ckpt)
    e.cli("tokenizer", "train", expect=rf"checkpoint {p(ckpt)} does not fit this model \(RuntimeError", protect=(ckpt,))


@case
def truncated_checkpoint(e: Env) -> None:
    ckpt = e.tok / "checkpoint.pt"
    truncate(ckpt, 0.5)
    e.cli("tokenizer", "train", expect=f"corrupt or unreadable checkpoint {p(ckpt)}.*Delete it",
          protect=(ckpt, e.tok / "model.pt"))


@case
def empty_checkpoint(e: Env) -> None:
    ckpt = e.tok / "checkpoint.pt"
    ckpt.write_bytes(b"")
    e.cli("tokenizer", "train", expect=rf"corrupt or unreadable checkpoint {p(ckpt)} \(\w+Error", protect=(ckpt,))


@case
def truncated_model(e: Env) -> None:
    model = e.tok / "model.pt"
    truncate(model, 0.7)
    e.cli("tokenizer", "encode", expect=f"cannot read the PyTorch checkpoint {p(model)}",
          protect=(model, *sorted((e.tok / "codes").glob("*.npy"))))


def _poison_losses(e: Env, at_step: int, term: str) -> None:
    from lgvq.tokenizers.vqvae import VQVAE

    real = VQVAE.generator_losses

    def poisoned(self, x, out, step):
        terms = dict(real(self, x, out, step))
        if step >= at_step:
            terms[term] = terms[term] * float("inf")
        return terms

    e.monkeypatch.setattr(VQVAE, "generator_losses", poisoned)


@case
def non_finite_loss(e: Env) -> None:
    _poison_losses(e, at_step=1, term="commit")
    run = e.res / "tokenizers" / "vqvae" / "lg" / "seed7"
    e.cli("tokenizer", "train", run=[*RUN[:-1], "7"], expect=r"non-finite loss at step 1: term 'commit' = (inf|nan)",
          absent=(run / "model.pt",))
    # the checkpoint of the last finite step survives (step 1), nothing was written after the NaN
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 1


@case
def non_finite_loss_from_nan_pixels(e: Env) -> None:
    from lgvq.tokenizers.registry import build_tokenizer
    from lgvq.train.loop import NonFiniteLossError
    from lgvq.train.terms import TermWindow
    from lgvq.train.tokenizer_task import TokenizerTask

    task = TokenizerTask(build_tokenizer("vqvae", TINY, image_size=16), None, lr=1e-3, betas=(0.5, 0.9))
    x = torch.zeros(2, 3, 16, 16)
    x[1, 0, 3, 3] = float("nan")
    window = TermWindow()  # what train_loop does with the step's terms: checked at the next log point
    window.add(task.train_step({"image": x}, 12), 12)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 12: term '\w+' = nan"):
        window.flush()


@case
def unwritable_output_directory(e: Env) -> None:
    # Tests may run as root, for whom chmod does not stop writes: a regular file where a directory
    # is needed fails for everybody (ENOTDIR).
    blocker = e.dir / "blocker"
    blocker.write_text("a file, not a directory")
    e.cli("data", "prepare", patch=lambda c: c.update(results_dir=str(blocker / "res")), run=["--dataset", "shapes"],
          expect=f"cannot write {p(blocker / 'res')}/shapes/.*: Not a directory", protect=(blocker,))


@case
def run_directory_blocked_by_a_file(e: Env) -> None:
    blocked = e.res / "tokenizers" / "vqvae" / "lg" / "seed9"
    blocked.write_text("not a directory")
    e.cli("tokenizer", "train", run=[*RUN[:-1], "9"], expect=rf"File exists: '{p(blocked)}'", protect=(blocked,))


@case
def read_only_output_directory(e: Env) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions (covered by unwritable_output_directory)")
    out = e.dir / "tables"
    out.mkdir()
    out.chmod(0o555)
    try:
        e.cli("tables", "build", "--all", "--out-dir", str(out), run=[], expect=f"cannot write {p(out)}")
    finally:
        out.chmod(0o755)


@case
def disk_full_while_writing_a_checkpoint(e: Env) -> None:
    from lgvq.train import loop

    real_save, calls = torch.save, []

    def save_then_fill_the_disk(obj, f, *a, **k):
        calls.append(f)
        if len(calls) < 2:
            return real_save(obj, f, *a, **k)
        f.write(b"PK\x03\x04 half a checkpoint")  # torch.save writes through the temporary file's handle
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    e.monkeypatch.setattr(loop.torch, "save", save_then_fill_the_disk)
    run = e.res / "tokenizers" / "vqvae" / "lg" / "seed8"
    e.cli("tokenizer", "train", run=[*RUN[:-1], "8"],
          expect=f"cannot write {p(run / 'checkpoint.pt')}: No space left on device", absent=(run / "model.pt",))
    # the step-1 checkpoint is intact, and no half-written temporary is left beside it
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 1
    assert sorted(f.name for f in run.iterdir() if f.name.startswith(".")) == []


@case
def java_missing_for_caption_metrics(e: Env) -> None:
    from lgvq.metrics import captions

    e.monkeypatch.setattr(captions.shutil, "which", lambda name, *a, **k: None)
    with pytest.raises(captions.JavaMissingError, match=r"Java 17 needed for METEOR"):
        captions.caption_scores({1: "a red circle"}, {1: ["a red circle", "one red disc"]})


@case
def corrupt_code_file(e: Env) -> None:
    codes = e.tok / "codes" / "test.npy"
    out = e.res / "eval" / "reconstruction" / "vqvae" / "lg" / "seed0"
    for keep in (0, 40, 0.9):  # empty, cut in the header, cut in the data
        shutil.copy(e.tok / "codes" / "train.npy", codes)
        truncate(codes, keep)
        e.cli("eval", "reconstruction", expect=f"corrupt or missing code file {p(codes)}.*lgvq tokenizer encode",
              protect=(out / "metrics.json", *sorted((out / "reconstructions").iterdir())))


@case
def interrupted_text_cache(e: Env) -> None:
    cache = e.res / "text" / "minilm.npz"
    original = cache.read_bytes()
    for keep in (0, 0.5, 0.999):  # empty, half written, only the zip directory missing
        cache.write_bytes(original[: int(len(original) * keep)])
        e.cli("tokenizer", "train", expect=f"corrupt or truncated text cache {p(cache)}.*lgvq text cache",
              protect=(e.tok / "checkpoint.pt", e.tok / "model.pt"))


@case
def corrupt_fid_statistics_cache(e: Env) -> None:
    stats = sorted((e.res / "eval" / "fid_cache").glob("stats-*.npz"))
    assert stats, "the base run should have cached the reference statistics"
    truncate(stats[0], 0.5)
    out = e.res / "eval" / "reconstruction" / "vqvae" / "lg" / "seed0"
    e.cli("eval", "reconstruction", expect=f"corrupt FID statistics cache {p(stats[0])}.*delete it",
          protect=(stats[0], out / "metrics.json"))


@case
def data_not_prepared(e: Env) -> None:
    marker = e.res / "data" / "prepared.json"
    marker.unlink()
    e.cli("tokenizer", "train", expect=f"{p(marker)} is missing: run `lgvq data prepare", protect=(e.tok / "checkpoint.pt",))


@case
def cuda_requested_without_a_gpu(e: Env) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    e.cli("tokenizer", "train", patch=_set("device", "cuda"), expect=r"device: 'cuda' requested but no CUDA device",
          protect=(e.tok / "checkpoint.pt",))


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, env):
    CASES[name](env)


def test_catalogue_size():
    assert len(CASES) >= 18


# --- through the real executable -----------------------------------------------------------------

def _lgvq(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "lgvq"), *args], check=False, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_cli_subprocess_exit_status_and_message(tmp_path):
    cfg = copy.deepcopy(CONFIG)
    cfg["train"]["stpes"] = 3
    path = _write_config(tmp_path, cfg)
    out = _lgvq("data", "prepare", "--config", str(path), "--dataset", "shapes")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"lgvq: error: invalid config {path}:",
        "  train: Additional properties are not allowed ('stpes' was unexpected)"]
    assert not (tmp_path / "res").exists()


def test_wordnet_missing_for_wups(tmp_path):
    empty = tmp_path / "nltk_data"
    empty.mkdir()
    code = "from lgvq.metrics.vqa import wups; print(wups(['dog'], ['cat'], 0.9))"
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "NLTK_DATA": str(empty)})
    if out.returncode == 0:
        pytest.skip("WordNet is installed in one of nltk's default folders (found without NLTK_DATA)")
    assert "WordNetMissingError" in out.stderr
    assert re.search(rf"WordNet \(needed for WUPS\) not found under {p(empty)}.*install_wordnet\.sh", out.stderr)
