"""CPU bf16 autocast (`train/stage2/downstream.cpu_bf16`): what runs in bf16, what stays fp32, how it is recorded."""

from __future__ import annotations

import pytest
import torch

from lgvq.config import ConfigError, tokenizer_job_slice, validate_config
from lgvq.downstream.task import HeadTask
from lgvq.lg.module import LanguageGuidance
from lgvq.text.base import TextFeatures
from lgvq.manifest import config_hash
from lgvq.pipeline import jobs
from lgvq.tokenizers.quantizers import VectorQuantizer
from lgvq.tokenizers.registry import build_tokenizer
from lgvq.train import precision
from lgvq.train.precision import BF16_CPU, FP32, Execution, cpu_bf16_enabled, cpuinfo_has_bf16_units, execution_note
from lgvq.train.tokenizer_task import TokenizerTask

MINIMAL = {"datasets": {"shapes": {"source": "shapes"}}, "tokenizers": {"vqgan": {"class": "vqgan"}}}
TINY = dict(ch=8, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[], z_channels=8, embed_dim=4, n_embed=16,
            disc_start=0, disc_ch=8, disc_layers=1)


def test_auto_follows_the_cpus_bf16_matrix_units_and_on_off_ignore_them(monkeypatch):
    for has_units in (True, False):
        monkeypatch.setattr(precision, "cpu_has_bf16_units", lambda: has_units)
        assert cpu_bf16_enabled("auto") is has_units
        assert cpu_bf16_enabled("on") and not cpu_bf16_enabled("off")
    with pytest.raises(ValueError, match="cpu_bf16: 'yes'"):
        cpu_bf16_enabled("yes")


def test_the_cpuinfo_rule_is_the_amx_bf16_flag_and_avx512_bf16_alone_is_not_enough():
    assert cpuinfo_has_bf16_units("processor : 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile amx_bf16 amx_int8\n")
    # dot-product bf16 only (Cooper Lake, Zen 4): measured slower than fp32 for the default profile's steps
    assert not cpuinfo_has_bf16_units("flags : sse avx512f avx512_bf16\n")
    assert not cpuinfo_has_bf16_units("flags : fpu sse avx2 fma avx512f\nbugs : amx_bf16\n")  # only `flags` counts


def test_off_is_fp32_eager_and_on_runs_matmuls_in_bf16_with_fp32_parameters():
    for setting, dtype, name in (("off", torch.float32, FP32), ("on", torch.bfloat16, BF16_CPU)):
        ex = Execution.for_device("cpu", fast_path=True, cpu_bf16=setting)
        with ex.autocast():
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == dtype
        assert ex.record()["precision"] == name and not ex.fast and ex.optimizer_kwargs() == {}
        assert isinstance(ex.record()["cpu_bf16_units"], bool)
    assert not Execution.for_device("meta", fast_path=False, cpu_bf16="on").cpu_bf16  # the CPU's switch only


def test_code_assignment_stays_fp32_under_cpu_autocast():
    # Features and codes clustered around a shared mean: their distances differ only in bits bf16
    # drops, so a bf16 distance matmul picks other codes (checked below, so this test can fail).
    g = torch.Generator().manual_seed(0)
    q = VectorQuantizer(64, 16)
    with torch.no_grad():
        q.embedding.weight.copy_(8 + 0.05 * torch.randn(64, 16, generator=g))
    flat = 8 + 0.05 * torch.randn(256, 16, generator=g)
    w = q.embedding.weight.detach()
    truth = q.nearest(flat)  # fp32, outside autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = q.nearest(flat)
        naive = flat @ w.t()
        assert naive.dtype == torch.bfloat16
        naive_codes = (flat.pow(2).sum(1, keepdim=True) - 2 * naive + w.pow(2).sum(1)[None]).argmin(1)
    assert torch.equal(got, truth)
    assert not torch.equal(naive_codes, truth)


def _tokenizer_step(setting: str):
    torch.manual_seed(0)
    model = build_tokenizer("vqgan", TINY, image_size=16)
    seen: dict[str, torch.dtype] = {}
    model.encoder.register_forward_hook(lambda m, i, o: seen.update(encoder=o.dtype) and None)
    nearest = model.quantizer.nearest

    def watched(flat, w=None):
        seen["assignment_input"] = flat.dtype
        codes = nearest(flat, w)
        seen["codes_match_fp32"] = torch.equal(codes, nearest(flat.float(), None if w is None else w.float()))
        return codes

    model.quantizer.nearest = watched
    task = TokenizerTask(model, None, lr=1e-3, betas=(0.5, 0.9), cpu_bf16=setting)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    terms = task.train_step({"image": x}, 0)
    return task, seen, terms, model


def test_a_tokenizer_step_under_cpu_bf16_computes_in_bf16_and_keeps_losses_and_weights_fp32():
    task, seen, terms, model = _tokenizer_step("on")
    assert seen["encoder"] == torch.bfloat16 and seen["codes_match_fp32"]
    assert {"rec", "gan", "disc"} <= set(terms)  # the discriminator's step ran under it too
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in terms.values())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert task.execution.record()["precision"] == BF16_CPU


def test_a_tokenizer_step_with_cpu_bf16_off_is_fp32_throughout():
    task, seen, terms, _ = _tokenizer_step("off")
    assert seen["encoder"] == torch.float32 and seen["assignment_input"] == torch.float32
    assert task.execution.record()["precision"] == FP32 and not task.autocast


def test_the_language_guided_losses_come_out_fp32_under_cpu_bf16():
    torch.manual_seed(0)
    B, L, DT, V = 3, 6, 8, 20
    lg = LanguageGuidance(code_dim=4, text_width=DT, token_embeddings=torch.randn(V, DT), max_len=L, grid_tokens=16,
                          gsa=1.0, mtp=1.0, ras=1.0)
    valid = torch.ones(B, L, dtype=torch.bool)
    special = torch.zeros(B, L, dtype=torch.bool)
    special[:, [0, -1]] = True
    text = TextFeatures(torch.randint(0, V, (B, L)), torch.randn(B, L, DT), valid, special, torch.randn(B, DT))
    with Execution.for_device("cpu", False, cpu_bf16="on").autocast():
        terms = lg(torch.randn(B, 4, 4, 4), text, torch.Generator().manual_seed(0))
    assert {k: v.dtype for k, v in terms.items()} == dict.fromkeys(("gsa", "mtp", "ras"), torch.float32)


def test_a_head_step_under_cpu_bf16_runs_its_layers_in_bf16_and_sums_the_loss_in_fp32():
    model = torch.nn.Linear(8, 4)
    seen = []

    def loss_terms(m, b):
        y = m(b)
        seen.append(y.dtype)
        return {"mse": y.pow(2).mean()}

    task = HeadTask(model, loss_terms, lr=1e-3, cpu_bf16="on")
    before = model.weight.detach().clone()
    task.train_step(torch.randn(3, 8), 0)
    assert seen == [torch.bfloat16] and model.weight.dtype == torch.float32
    assert not torch.equal(before, model.weight)
    assert task.execution.record()["precision"] == BF16_CPU
    HeadTask(model, loss_terms, lr=1e-3, cpu_bf16="off").train_step(torch.randn(3, 8), 0)
    assert seen[-1] == torch.float32


def test_a_table_note_names_cpu_bf16():
    plain = {"precision": FP32, "tf32": False, "channels_last": False, "compile": False, "cudnn_benchmark": False}
    assert execution_note({**plain, "precision": BF16_CPU}) == "bf16 autocast (CPU)"
    assert execution_note({**plain, "precision": "bf16-autocast"}) == "bf16 autocast"


def test_cpu_bf16_enters_the_job_hash_unless_off():
    def tok(train):
        return config_hash(tokenizer_job_slice(validate_config({**MINIMAL, "train": train}), "shapes", "vqgan",
                                               "base", 0))

    assert tok({}) == tok({"cpu_bf16": "off"})  # off: the hashes from before the switch existed
    assert len({tok({}), tok({"cpu_bf16": "on"}), tok({"cpu_bf16": "auto"})}) == 3
    for stage, job in (("stage2", jobs.stage2_training), ("downstream", jobs.downstream_training)):
        hashes = {config_hash(job(validate_config({**MINIMAL, stage: {"cpu_bf16": s}}), "unconditional", "shapes",
                                  "vqgan", "base", 0)) for s in ("off", "on", "auto")}
        assert len(hashes) == 3, stage
    cfg = validate_config({**MINIMAL, "stage2": {"cpu_bf16": "on"}})
    assert jobs.labelmap_vq(cfg, "shapes")["stage2"]["cpu_bf16"] == "on"


def test_an_unquoted_yaml_on_gets_a_hint_to_quote_it():
    with pytest.raises(ConfigError, match=r'downstream\.cpu_bf16: .*quote it, e\.g\. "on"'):
        validate_config({**MINIMAL, "downstream": {"cpu_bf16": True}})
