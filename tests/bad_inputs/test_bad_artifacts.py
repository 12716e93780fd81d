"""Bad-input catalogue, artifact errors (issue 12): missing weights, and checkpoints, models, code
files and caches that are truncated, corrupt or from another config, are named by their file and
left as they were."""

from __future__ import annotations

import shutil

import pytest
import torch
from bad_inputs_kit import RUN, catalogue, Env, p, set_key, truncate

CASES, case = catalogue()


@case
def captions_longer_than_the_token_limit(e: Env) -> None:
    # The cache holds captions tokenised to 30 tokens; the config now allows 16.
    cache = e.res / "text" / "minilm.npz"
    e.cli("tokenizer", "train", patch=set_key("text_encoder.max_length", 16),
          expect=rf"text_encoder\.max_length.*{p(cache)}.*30 tokens.*max_length 16",
          protect=(e.tok / "checkpoint.pt", e.tok / "model.pt", cache))


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
    e.cli("tokenizer", "train", patch=set_key("tokenizers.vqgan.params.perceptual_weights", str(vgg)),
          run=["--dataset", "shapes", "--tokenizer", "vqgan", "--variant", "base", "--seed", "0"],
          expect=f"perceptual_weights: VGG16 weights not found at {p(vgg)}",
          absent=(e.res / "tokenizers" / "vqgan" / "base" / "seed0" / "checkpoint.pt",))


@case
def missing_frozen_checkpoint(e: Env) -> None:
    frozen = e.dir / "external" / "vqvae.pt"
    e.cli("tokenizer", "train", patch=set_key("tokenizers.vqvae.checkpoint", str(frozen)), run=[*RUN[:5], "base", "--seed", "0"],
          expect=rf"tokenizers\.vqvae\.checkpoint: trained tokenizer not found: {p(frozen)}",
          absent=(e.res / "tokenizers" / "vqvae" / "base" / "seed0" / "model.pt",))


@case
def frozen_checkpoint_that_is_a_text_file(e: Env) -> None:
    notes = e.dir / "notes.txt"
    notes.write_text("not weights\n")
    err = e.cli("tokenizer", "train", patch=set_key("tokenizers.vqvae.checkpoint", str(notes)), run=[*RUN[:5], "base", "--seed", "0"],
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


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, env):
    CASES[name](env)
