"""Published tokenizers (issue 22): each adapter gives the codes and reconstructions of its
project's own code on the same images, from a checkpoint saved in that project's format.

taming-transformers and Open-MAGVIT2 are checked against their PyPI packages' model code
(random weights, native checkpoint layout, codes equal, reconstructions within 1e-5). LlamaGen
has no installable package: its checkpoint layout is spelled out below from its published
vq_model.py, and the adapter is checked for loading it exactly, shapes and round trip.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from lgvq.cli import main
from lgvq.config import load_config
from lgvq.io import ArtifactError
from lgvq.pipeline import paths
from lgvq.pipeline.tokenizer import load_tokenizer
from lgvq.tables.build import build_table
from lgvq.tokenizers.registry import build_tokenizer

TAMING = dict(ch=32, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[8], z_channels=8, embed_dim=4, n_embed=32,
              resolution=16)
MAGVIT = dict(ch=32, ch_mult=[1, 2, 2], num_res_blocks=1, z_channels=6, n_embed=64)
LLAMAGEN = dict(ch=32, ch_mult=[1, 2, 2], num_res_blocks=1, z_channels=16, codebook_size=64, codebook_embed_dim=8)


def images(n=2, size=16, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def taming_reference(params=TAMING):
    """taming's VQModel minus its Lightning shell: the same submodules under the same names."""
    model = pytest.importorskip("taming.modules.diffusionmodules.model",
                                reason="taming-transformers-rom1504 (test reference) not installed: `make setup`")
    quantize = pytest.importorskip("taming.modules.vqvae.quantize")
    dd = dict(double_z=False, in_channels=3, out_ch=3, dropout=0.0,
              **{k: params[k] for k in ("ch", "ch_mult", "num_res_blocks", "attn_resolutions", "z_channels", "resolution")})
    ref = nn.Module()
    ref.encoder, ref.decoder = model.Encoder(**dd), model.Decoder(**dd)
    ref.quantize = quantize.VectorQuantizer2(params["n_embed"], params["embed_dim"], beta=0.25)
    ref.quant_conv = nn.Conv2d(params["z_channels"], params["embed_dim"], 1)
    ref.post_quant_conv = nn.Conv2d(params["embed_dim"], params["z_channels"], 1)
    ref.quantize.embedding.weight.data.normal_()  # spread codes: the release's init is near-degenerate
    return ref.eval()


@torch.no_grad()
def taming_forward(ref, x):
    z_q, _, (_, _, idx) = ref.quantize(ref.quant_conv(ref.encoder(x)))
    return idx.view(x.shape[0], *z_q.shape[2:]), ref.decoder(ref.post_quant_conv(z_q))


def lightning_ckpt(state, path, extra=()):
    """What Lightning's ModelCheckpoint writes (last.ckpt), with the loss's weights the VQGAN keeps."""
    state = {**state, **{f"loss.{k}": torch.zeros(3) for k in extra}}
    torch.save({"epoch": 3, "global_step": 1234, "pytorch-lightning_version": "1.0.8", "state_dict": state}, path)


def test_taming_vqgan_matches_taming_transformers_on_the_same_images(tmp_path):
    torch.manual_seed(0)
    ref = taming_reference()
    lightning_ckpt(ref.state_dict(), tmp_path / "last.ckpt", extra=("discriminator.main.0.weight", "perceptual_loss.x"))
    ours = build_tokenizer("taming_vqgan", TAMING, image_size=16)
    payload = torch.load(tmp_path / "last.ckpt", weights_only=True)
    ours.load_state_dict(ours.convert_checkpoint(payload, "last.ckpt"))
    ours.eval()
    x = images()
    codes, rec = taming_forward(ref, x)
    assert torch.equal(ours.encode_codes(x), codes)
    with torch.no_grad():
        out = ours(x)
        assert (out.x_rec - rec).abs().max() <= 1e-5
        assert (ours.decode_codes(codes) - rec).abs().max() <= 1e-5
    assert torch.equal(ours.codebook(), ref.quantize.embedding.weight)
    # a bare state dict (e.g. converted from the release) loads the same
    assert torch.equal(ours.convert_checkpoint(ref.state_dict(), "sd.pt")["quantizer.embedding.weight"],
                       ref.quantize.embedding.weight)


def test_taming_attention_follows_the_training_resolution_not_the_data_size():
    ours = build_tokenizer("taming_vqgan", {**TAMING, "resolution": 32, "attn_resolutions": [16]}, image_size=16)
    # at a training resolution of 32, side 16 is level 1: attention there whatever size the data have
    assert len(ours.encoder.down[1].attn) == 1 and len(ours.encoder.down[0].attn) == 0


def magvit_reference():
    improved = pytest.importorskip("open_magvit2.taming.modules.diffusionmodules.improved_model",
                                   reason="open-magvit2 (test reference) not installed: `make setup`")
    lfq = pytest.importorskip("open_magvit2.taming.modules.vqvae.lookup_free_quantize")
    dd = dict(double_z=False, in_channels=3, out_ch=3, resolution=32,
              **{k: MAGVIT[k] for k in ("ch", "ch_mult", "num_res_blocks", "z_channels")})
    ref = nn.Module()
    ref.encoder, ref.decoder = improved.Encoder(**dd), improved.Decoder(**dd)
    ref.quantize = lfq.LFQ(dim=MAGVIT["z_channels"], codebook_size=MAGVIT["n_embed"])
    return ref.eval()


@torch.no_grad()
def magvit_forward(ref, x):
    (quant, _, idx), _ = ref.quantize(ref.encoder(x), return_loss_breakdown=True)
    return idx.view(x.shape[0], *quant.shape[2:]), ref.decoder(quant)


def test_open_magvit2_matches_the_release_code_on_the_same_images(tmp_path):
    torch.manual_seed(1)
    ref = magvit_reference()
    lightning_ckpt(ref.state_dict(), tmp_path / "imagenet_256_L.ckpt", extra=("discriminator.x",))
    ours = build_tokenizer("open_magvit2", MAGVIT, image_size=32)
    ours.load_state_dict(ours.convert_checkpoint(torch.load(tmp_path / "imagenet_256_L.ckpt", weights_only=True), "c"))
    ours.eval()
    x = images(size=32)
    codes, rec = magvit_forward(ref, x)
    assert torch.equal(ours.encode_codes(x), codes)
    with torch.no_grad():
        assert (ours(x).x_rec - rec).abs().max() <= 1e-5
        assert (ours.decode_codes(codes) - rec).abs().max() <= 1e-5
    assert torch.equal(ours.codebook(), ref.quantize.codebook)  # code i's vector = its bits as +-1
    with torch.no_grad():  # one code alone (the codebook picture): defined, where the release's code gives NaN
        assert torch.isfinite(ours.decode_codes(torch.arange(4).view(4, 1, 1))).all()


def test_open_magvit2_reads_the_ema_weights_when_asked(tmp_path):
    torch.manual_seed(2)
    ref = magvit_reference()
    live = build_tokenizer("open_magvit2", MAGVIT, image_size=32).state_dict()
    # LitEma's layout: the EMA copy of every parameter under model_ema.<name without dots>
    ckpt = {"state_dict": {**live, **{"model_ema." + k.replace(".", ""): v for k, v in ref.state_dict().items()},
                           "model_ema.decay": torch.tensor(0.999), "model_ema.num_updates": torch.tensor(7)}}
    ema = build_tokenizer("open_magvit2", {**MAGVIT, "use_ema": True}, image_size=32)
    ema.load_state_dict(ema.convert_checkpoint(ckpt, "c"))
    ema.eval()
    x = images(size=32)
    codes, rec = magvit_forward(ref, x)
    assert torch.equal(ema.encode_codes(x), codes)
    with torch.no_grad():
        assert (ema(x).x_rec - rec).abs().max() <= 1e-5  # the EMA copy, not the live weights beside it
    with pytest.raises(ArtifactError, match="no model_ema"):
        ema.convert_checkpoint({"state_dict": live}, "plain.ckpt")


def llamagen_layout(p=LLAMAGEN):
    """The parameter shapes of LlamaGen's VQModel (tokenizer/tokenizer_image/vq_model.py), spelled
    out from its published code: conv_blocks.{i}.res.{j}, attention at the last encoder level and the
    first (coarsest) decoder level, mid.{0,1,2}, the decoder's conv_blocks coarse to fine."""
    ch, mult, nrb, z, d, k = (p[x] for x in ("ch", "ch_mult", "num_res_blocks", "z_channels", "codebook_embed_dim",
                                             "codebook_size"))
    shapes: dict[str, tuple] = {}

    def conv(name, cin, cout, ks):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (cout, cin, ks, ks), (cout,)

    def gn(name, c):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (c,), (c,)

    def res(name, cin, cout):
        gn(f"{name}.norm1", cin), conv(f"{name}.conv1", cin, cout, 3), gn(f"{name}.norm2", cout)
        conv(f"{name}.conv2", cout, cout, 3)
        if cin != cout:
            conv(f"{name}.nin_shortcut", cin, cout, 1)

    def attn(name, c):
        gn(f"{name}.norm", c)
        for part in ("q", "k", "v", "proj_out"):
            conv(f"{name}.{part}", c, c, 1)

    conv("encoder.conv_in", 3, ch, 3)
    cin = ch
    for i, m in enumerate(mult):
        for j in range(nrb):
            res(f"encoder.conv_blocks.{i}.res.{j}", cin, ch * m)
            cin = ch * m
            if i == len(mult) - 1:
                attn(f"encoder.conv_blocks.{i}.attn.{j}", cin)
        if i != len(mult) - 1:
            conv(f"encoder.conv_blocks.{i}.downsample.conv", cin, cin, 3)
    res("encoder.mid.0", cin, cin), attn("encoder.mid.1", cin), res("encoder.mid.2", cin, cin)
    gn("encoder.norm_out", cin), conv("encoder.conv_out", cin, z, 3)
    cin = ch * mult[-1]
    conv("decoder.conv_in", z, cin, 3)
    res("decoder.mid.0", cin, cin), attn("decoder.mid.1", cin), res("decoder.mid.2", cin, cin)
    for n, i in enumerate(reversed(range(len(mult)))):
        for j in range(nrb + 1):
            res(f"decoder.conv_blocks.{n}.res.{j}", cin, ch * mult[i])
            cin = ch * mult[i]
            if i == len(mult) - 1:
                attn(f"decoder.conv_blocks.{n}.attn.{j}", cin)
        if i != 0:
            conv(f"decoder.conv_blocks.{n}.upsample.conv", cin, cin, 3)
    gn("decoder.norm_out", cin), conv("decoder.conv_out", cin, 3, 3)
    conv("quant_conv", z, d, 1), conv("post_quant_conv", d, z, 1)
    shapes["quantize.embedding.weight"], shapes["quantize.codebook_used"] = (k, d), (65536,)
    g = torch.Generator().manual_seed(4)
    # convs at PyTorch's default scale (std ~ 1/sqrt(fan in)); norms near identity; codes anywhere
    scale = lambda name, s: {4: 1 / float(np.prod(s[1:])) ** 0.5, 1: 0.1}.get(len(s), 1.0)  # noqa: E731
    state = {name: torch.randn(s, generator=g) * scale(name, s) for name, s in shapes.items()}
    for name in state:
        if ".norm" in name:
            state[name] = (1.0 if name.endswith("weight") else 0.0) + 0.1 * state[name]
    return state


def test_llamagen_vq_loads_its_release_layout_exactly_and_round_trips(tmp_path):
    state = llamagen_layout()
    torch.save({"model": state}, tmp_path / "vq_ds16_c2i.pt")
    ours = build_tokenizer("llamagen_vq", LLAMAGEN, image_size=32)
    converted = ours.convert_checkpoint(torch.load(tmp_path / "vq_ds16_c2i.pt", weights_only=True), "vq_ds16_c2i.pt")
    # every release tensor but the usage buffer lands somewhere, and none is invented
    assert len(converted) == len(state) - 1 == len(ours.state_dict())
    assert torch.equal(converted["decoder.up.2.block.0.conv1.weight"], state["decoder.conv_blocks.0.res.0.conv1.weight"])
    ours.load_state_dict(converted)
    ours.eval()
    x = images(size=32)
    with torch.no_grad():
        out = ours(x)
        codes = ours.encode_codes(x)
        assert codes.shape == (2, 8, 8) and out.x_rec.shape == x.shape and int(codes.max()) < 64
        # decoding the codes is the forward pass's decoder (up to the straight-through's rounding)
        assert torch.allclose(ours.decode_codes(codes), out.x_rec, atol=1e-4, rtol=1e-4)
        assert len(codes.unique()) > 4
        # l2-normalised codes: unit rows, and each code is the most cosine-similar one to its feature
        book = ours.codebook()
        assert torch.allclose(book.norm(dim=1), torch.ones(64), atol=1e-5)
        feat = nn.functional.normalize(ours.quant_conv(ours.encoder(x)), dim=1).permute(0, 2, 3, 1)
        assert torch.equal((feat @ book.t()).argmax(-1), codes)


def test_llamagen_training_checkpoints_load_preferring_ema_as_its_own_scripts(tmp_path):
    import argparse

    from lgvq.io import load_torch_file

    live, ema = llamagen_layout(), {k: v + 1 for k, v in llamagen_layout().items()}
    # vq_train.py's checkpoint: weights, optimiser and discriminator states, and its argparse `args`
    torch.save({"model": live, "ema": ema, "steps": 10, "args": argparse.Namespace(codebook_size=64)},
               tmp_path / "0000010.pt")
    payload = load_torch_file(tmp_path / "0000010.pt")  # weights_only, with the Namespace allowed
    ours = build_tokenizer("llamagen_vq", LLAMAGEN, image_size=32)
    state = ours.convert_checkpoint(payload, "0000010.pt")
    assert torch.equal(state["quant_conv.weight"], ema["quant_conv.weight"])


def test_a_checkpoint_of_another_configuration_is_refused_naming_the_mismatch():
    ours = build_tokenizer("llamagen_vq", LLAMAGEN, image_size=32)
    with pytest.raises(ArtifactError, match=r"vq.pt: not a LlamaGen VQ checkpoint.*quantizer.embedding.weight"):
        ours.convert_checkpoint({"model": llamagen_layout({**LLAMAGEN, "codebook_size": 128})}, "vq.pt")


def test_input_size_runs_the_model_at_its_own_resolution():
    ours = build_tokenizer("llamagen_vq", {**LLAMAGEN, "input_size": 64}, image_size=32).eval()
    x = images(size=32)
    assert ours.encode_codes(x).shape == (2, 16, 16) and ours.downsample == 2  # grid of the 64-px input
    with torch.no_grad():
        assert ours(x).x_rec.shape == x.shape  # back at the dataset's size


# -- through the DAG's jobs ------------------------------------------------------------------

def run_config(tmp_path, entries, **extra):
    cfg = {"results_dir": str(tmp_path / "results"),
           "datasets": {"shapes": {"source": "shapes", "synth": {"n": 20, "size": 16}, "image_size": 16,
                                   "eval_images": 4}},
           "tokenizers": entries, "train": {"steps": 2, "batch_size": 4}, **extra}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    sel = ["--config", str(path), "--dataset", "shapes"]
    assert main(["data", "prepare", *sel]) == 0
    return path, sel


def test_frozen_taming_checkpoint_runs_the_jobs_with_its_file_and_sha256_recorded(tmp_path):
    import hashlib

    torch.manual_seed(5)
    ref = taming_reference()
    ckpt = tmp_path / "last.ckpt"
    lightning_ckpt(ref.state_dict(), ckpt, extra=("discriminator.x",))
    path, sel = run_config(tmp_path, {"taming": {"class": "taming_vqgan", "params": TAMING, "checkpoint": str(ckpt),
                                                 "variants": ["base"]}})
    run = [*sel, "--tokenizer", "taming", "--variant", "base", "--seed", "0"]
    assert main(["tokenizer", "train", *run]) == 0 and main(["tokenizer", "encode", *run]) == 0
    cfg = load_config(path)
    d = paths.tokenizer_dir(cfg["results_dir"], "shapes", "taming", "base", 0)
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["frozen_checkpoint"] == {"path": str(ckpt), "file": "last.ckpt",
                                             "sha256": hashlib.sha256(ckpt.read_bytes()).hexdigest()}
    model = load_tokenizer(cfg, "shapes", "taming", "base", 0)
    x = images()
    assert torch.equal(model.encode_codes(x), taming_forward(ref, x)[0])
    assert np.load(d / "codes" / "test.npy").shape[1:] == (8, 8)


def test_a_pretrained_class_without_weights_refuses_to_train(tmp_path, capsys):
    _, sel = run_config(tmp_path, {"t": {"class": "taming_vqgan", "params": TAMING, "variants": ["base"]}})
    assert main(["tokenizer", "train", *sel, "--tokenizer", "t", "--variant", "base", "--seed", "0"]) == 2
    err = capsys.readouterr().err
    assert "tokenizers.t.checkpoint" in err and "tokenizers.t.init_from" in err


@pytest.mark.slow
def test_init_from_fine_tunes_a_published_checkpoint_in_the_training_job(tmp_path):
    torch.manual_seed(6)
    init = build_tokenizer("taming_vqgan", TAMING, image_size=16)
    ckpt = tmp_path / "last.ckpt"
    lightning_ckpt({k.replace("quantizer.", "quantize."): v for k, v in init.state_dict().items()}, ckpt)
    path, sel = run_config(tmp_path, {"ft": {"class": "taming_vqgan", "params": TAMING, "init_from": str(ckpt),
                                             "variants": ["base"]}})
    assert main(["tokenizer", "train", *sel, "--tokenizer", "ft", "--variant", "base", "--seed", "0"]) == 0
    cfg = load_config(path)
    d = paths.tokenizer_dir(cfg["results_dir"], "shapes", "ft", "base", 0)
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["steps"] == 2 and manifest["init_from"]["file"] == "last.ckpt"
    tuned = load_tokenizer(cfg, "shapes", "ft", "base", 0).state_dict()
    fresh = build_tokenizer("taming_vqgan", TAMING, image_size=16).state_dict()
    start = init.state_dict()
    dist = lambda a: sum(float((a[k] - start[k]).pow(2).sum()) for k in start)  # noqa: E731
    assert 0 < dist(tuned) < 0.01 * dist(fresh)  # trained, and from the checkpoint, not from scratch
    # init_from enters the job's hash only when set: a config without it keeps its old hash
    from lgvq.config import tokenizer_job_slice
    assert "init_from" in tokenizer_job_slice(cfg, "shapes", "ft", "base", 0)["tokenizer"]
    cfg["tokenizers"]["ft"]["init_from"] = None
    assert "init_from" not in tokenizer_job_slice(cfg, "shapes", "ft", "base", 0)["tokenizer"]


def test_init_from_a_file_of_another_configuration_names_the_key(tmp_path, capsys):
    torch.save(build_tokenizer("vqvae", {"ch": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [],
                                         "z_channels": 8, "embed_dim": 8, "n_embed": 16}, image_size=16).state_dict(),
               tmp_path / "small.pt")
    _, sel = run_config(tmp_path, {"t": {"class": "vqvae", "params": {"ch": 8, "ch_mult": [1, 2], "num_res_blocks": 1,
                                                                      "attn_resolutions": [], "z_channels": 8,
                                                                      "embed_dim": 8, "n_embed": 32},
                                         "init_from": str(tmp_path / "small.pt"), "variants": ["base"]}})
    assert main(["tokenizer", "train", *sel, "--tokenizer", "t", "--variant", "base", "--seed", "0"]) == 2
    assert "tokenizers.t.init_from" in capsys.readouterr().err


def test_checkpoint_and_init_from_exclude_each_other(tmp_path, capsys):
    _, sel = run_config(tmp_path, {"t": {"class": "taming_vqgan", "params": TAMING, "checkpoint": "a.ckpt",
                                         "init_from": "a.ckpt", "variants": ["base"]}})
    assert main(["tokenizer", "train", *sel, "--tokenizer", "t", "--variant", "base", "--seed", "0"]) == 2
    assert "exclude each other" in capsys.readouterr().err


def test_frozen_and_fine_tuned_rows_are_labelled():
    recs = [{"kind": "reconstruction", "dataset": "shapes", "tokenizer": t, "variant": v, "seed": 0,
             "metrics": {"PSNR": 20.0}} for t, v in (("taming", "base"), ("taming_ft", "base"), ("taming_ft", "lg"))]
    df = build_table("reconstruction", recs, dataset_columns={"shapes": None},
                     provenance={"taming": "frozen", "taming_ft": "fine-tuned"})
    labels = set(df["row"])
    assert {"taming (frozen)", "taming_ft (fine-tuned)", "taming_ft+LG (fine-tuned)"} <= labels


def test_steps_of_an_entry_override_train_steps_and_leave_other_hashes_alone(tmp_path):
    from lgvq.config import tokenizer_job_slice

    torch.manual_seed(7)
    init = build_tokenizer("taming_vqgan", TAMING, image_size=16)
    torch.save(init.state_dict(), tmp_path / "ours.pt")  # init_from also takes a state dict of the class
    path, sel = run_config(tmp_path, {"ft": {"class": "taming_vqgan", "params": TAMING, "init_from": str(tmp_path / "ours.pt"),
                                             "steps": 1, "variants": ["base"]}})
    assert main(["tokenizer", "train", *sel, "--tokenizer", "ft", "--variant", "base", "--seed", "0"]) == 0
    cfg = load_config(path)
    d = paths.tokenizer_dir(cfg["results_dir"], "shapes", "ft", "base", 0)
    assert json.loads((d / "manifest.json").read_text())["steps"] == 1  # train.steps is 2
    cfg["tokenizers"]["ft"]["steps"] = None
    assert "steps" not in tokenizer_job_slice(cfg, "shapes", "ft", "base", 0)["tokenizer"]


# -- config/field.yaml ---------------------------------------------------------------------------

def field_checkpoints(cfg) -> list[str]:
    return sorted({e.get("checkpoint") or e.get("init_from") for e in cfg["tokenizers"].values()} - {None})


def test_field_config_names_every_missing_checkpoint_before_a_run(monkeypatch, tmp_path):
    from pathlib import Path

    from lgvq.pipeline.preflight import problems

    monkeypatch.chdir(tmp_path)  # no weights/ here
    cfg = load_config(Path(__file__).resolve().parent.parent / "config" / "field.yaml")
    found = "\n".join(problems(cfg))
    for name in ("taming_f16_1024", "taming_f16_16384", "open_magvit2", "llamagen_vq16"):
        assert f"tokenizers.{name}.checkpoint" in found
    assert "tokenizers.taming_f16_1024_ft.init_from" in found
    assert len(field_checkpoints(cfg)) == 4  # the fine-tuned entry starts from the f16-1024 file


@pytest.mark.slow
def test_field_config_dry_runs_with_the_checkpoints_in_place(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    for name in ("Snakefile", "workflow", "config", "profiles"):
        (tmp_path / name).symlink_to(root / name)
    cfg = load_config(root / "config" / "field.yaml")
    for ckpt in field_checkpoints(cfg):  # dummy files where the config expects the downloads
        (tmp_path / ckpt).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / ckpt).write_bytes(b"")
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([str(bin_dir / "snakemake"), "-n", "--configfile", "config/field.yaml"], cwd=tmp_path,
                         env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert ".checkpoint" not in out.stderr and ".init_from" not in out.stderr  # only the data and weights are missing
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", out.stdout, re.M))
    # 4 paper tokenizers x (base, +LG) + 4 frozen + the fine-tuned entry's base and +LG
    assert jobs["train_tokenizer"] == "14" and jobs["eval_reconstruction"] == "14"


def test_plan_estimate_prices_the_field_config_training_only_what_trains(capsys):
    from pathlib import Path

    assert main(["plan", "estimate", "--config", str(Path(__file__).resolve().parent.parent / "config" / "field.yaml")]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("tokenizer taming_vqgan"))
    # only the fine-tuned entry's two runs, at its own 20000 steps, counted (the benchmark has no such class)
    assert line.split()[4:6] == ["2", "20000"] and "counted" in line
    assert "open_magvit2" not in out and "llamagen" not in out  # frozen: nothing to train


@pytest.mark.slow
def test_lg_fine_tuning_of_a_published_checkpoint_is_one_entry(tmp_path):
    """The `+LG (fine-tuned)` row: the LG module attaches to the published model's codebook."""
    torch.manual_seed(8)
    init = build_tokenizer("taming_vqgan", TAMING, image_size=16)
    ckpt = tmp_path / "last.ckpt"
    lightning_ckpt({k.replace("quantizer.", "quantize."): v for k, v in init.state_dict().items()}, ckpt)
    path, sel = run_config(tmp_path, {"ft": {"class": "taming_vqgan", "params": TAMING, "init_from": str(ckpt),
                                             "steps": 1, "variants": ["base", "lg"]}},
                           lg={"layers": 1}, text_encoder={"name": "minilm", "max_length": 30})
    cfg = load_config(path)
    assert main(["text", "cache", *sel, "--out", str(paths.text_cache(cfg["results_dir"], "shapes", "minilm"))]) == 0
    assert main(["tokenizer", "train", *sel, "--tokenizer", "ft", "--variant", "lg", "--seed", "0"]) == 0
    _, lg = load_tokenizer(cfg, "shapes", "ft", "lg", 0, with_lg=True)
    assert lg is not None and json.loads((paths.tokenizer_dir(cfg["results_dir"], "shapes", "ft", "lg", 0)
                                          / "manifest.json").read_text())["init_from"]["file"] == "last.ckpt"
    log = (paths.tokenizer_dir(cfg["results_dir"], "shapes", "ft", "lg", 0) / "log.csv").read_text()
    header = log.splitlines()[0].split(",")
    assert {"rec", "codebook", "commit"} <= set(header) and any(c.startswith("lg_") for c in header)  # LG terms trained
