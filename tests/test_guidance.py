"""Classifier-free guidance for the text-to-image generators (stage2.cond_dropout, stage2.guidance_scale) and their
extra draws per caption (stage2.samples_per_caption): null captions in training, guided logits at sampling, and
the defaults leave every job as it was."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from lgvq.config import ConfigError, load_config, validate_config
from lgvq.pipeline import jobs
from lgvq.pipeline.stage2 import caption_draw
from lgvq.stage2.conditions import drop_captions, null_caption
from lgvq.stage2.diffusion import TextToCodeDiffusion
from lgvq.stage2.gpt import CodeGPT

ROOT = Path(__file__).resolve().parent.parent


def smoke() -> dict:
    return load_config(ROOT / "config" / "smoke.yaml")


def test_the_caption_drawn_for_an_item_is_the_one_of_before_and_does_not_depend_on_the_dropout():
    for item in range(50):
        before = random.Random(3 * 1_000_003 + 2 * 10_007 + item).randrange(5)  # the formula before guidance
        assert caption_draw(5, 3, 2, item) == (before, False)
        assert caption_draw(5, 3, 2, item, 0.5)[0] == before
    dropped = [caption_draw(5, 0, 0, i, 0.3)[1] for i in range(2000)]
    assert 0.25 < sum(dropped) / len(dropped) < 0.35
    assert dropped == [caption_draw(5, 0, 0, i, 0.3)[1] for i in range(2000)]  # a pure function: resume draws the same


def test_dropped_rows_get_the_null_caption_and_the_others_stay():
    tokens, valid = torch.randn(3, 4, 6), torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
    t, v = drop_captions((tokens, valid), torch.tensor([False, True, False]))
    assert torch.equal(t[0], tokens[0]) and torch.equal(t[2], tokens[2]) and torch.equal(v[[0, 2]], valid[[0, 2]])
    assert not t[1].any() and v[1].tolist() == [True, False, False, False]  # one valid key for the attention
    nt, nv = null_caption((tokens, valid))
    assert not nt.any() and nv[:, 0].all() and not nv[:, 1:].any()


def _gpt() -> CodeGPT:
    torch.manual_seed(0)
    return CodeGPT(12, 6, n_prefix=3, width=16, layers=2, heads=2).eval()


def test_guided_ar_sampling_draws_from_null_plus_scale_times_the_difference_at_every_position():
    model = _gpt()
    prefix, null = torch.randn(4, 3, 16), torch.randn(4, 3, 16)
    scale = 3.0
    seq = model.sample(4, prefix=prefix, null_prefix=null, guidance=scale, temperature=0.0)  # argmax draws
    with torch.no_grad():
        cond, uncond = model.logits_of(seq, prefix), model.logits_of(seq, null)  # teacher-forced, no cache
    assert torch.equal(seq, (uncond + scale * (cond - uncond)).argmax(-1))
    assert not torch.equal(model.sample(4, prefix=prefix, temperature=0.0), seq)  # guidance changed the draws
    uncached = model.sample(4, prefix=prefix, null_prefix=null, guidance=scale, temperature=0.0, use_cache=False)
    assert torch.equal(uncached, seq)  # the key/value cache changes nothing, guided or not


def test_a_guidance_scale_of_one_is_the_unguided_sampler():
    model = _gpt()
    prefix, null = torch.randn(4, 3, 16), torch.randn(4, 3, 16)
    a = model.sample(4, prefix=prefix, generator=torch.Generator().manual_seed(1))
    b = model.sample(4, prefix=prefix, null_prefix=null, guidance=1.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="null_prefix"):
        model.sample(4, prefix=prefix, guidance=2.0)


def test_guided_diffusion_denoises_with_null_plus_scale_times_the_difference():
    torch.manual_seed(0)
    model = TextToCodeDiffusion(10, 5, 8, width=16, layers=1, heads=2, steps=1).eval()  # one step: x_0 drawn at once
    tokens, valid = torch.randn(3, 4, 8), torch.ones(3, 4, dtype=torch.bool)
    null = null_caption((tokens, valid))
    scale = 4.0
    x = model.sample(tokens, valid, null=null, guidance=scale, temperature=1e-6)
    masked = torch.full((3, 5), 10, dtype=torch.long)
    t = torch.ones(3, dtype=torch.long)
    with torch.no_grad():
        cond, uncond = model.predict_x0(masked, t, tokens, valid), model.predict_x0(masked, t, *null)
    assert torch.equal(x, (uncond + scale * (cond - uncond)).argmax(-1))
    g = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    assert torch.equal(model.sample(tokens, valid, generator=g()), model.sample(tokens, valid, generator=g(), guidance=1.0))


def test_guidance_needs_null_captions_in_training():
    cfg = smoke()
    cfg["stage2"]["guidance_scale"] = 2.0
    with pytest.raises(ConfigError, match="stage2.guidance_scale: 2.0 needs stage2.cond_dropout > 0"):
        validate_config(cfg)
    cfg["stage2"]["cond_dropout"] = 0.1
    validate_config(cfg)


def test_the_defaults_leave_every_stage2_hash_as_it_was_and_guidance_resamples_without_retraining():
    cfg = smoke()
    training = jobs.stage2_training(cfg, "t2i_ar", "shapes", "vqgan", "base", 0)
    assert "cond_dropout" not in training["stage2"] and "guidance_scale" not in training["stage2"]
    assert "guidance_scale" not in jobs.stage2_job(cfg, "t2i_ar", "shapes", "vqgan", "base", 0)
    guided = smoke()
    guided["stage2"].update(guidance_scale=3.0)
    # the checkpoint's hash stays (guidance is read only when sampling); the text-to-image sampling jobs change
    assert jobs.stage2_training(guided, "t2i_ar", "shapes", "vqgan", "base", 0) == training
    assert jobs.stage2_job(guided, "t2i_ar", "shapes", "vqgan", "base", 0)["guidance_scale"] == 3.0
    assert jobs.stage2_job(guided, "unconditional", "shapes", "vqgan", "base", 0) == \
        jobs.stage2_job(cfg, "unconditional", "shapes", "vqgan", "base", 0)  # a task without a caption: untouched
    guided["stage2"].update(cond_dropout=0.1)
    assert jobs.stage2_training(guided, "t2i_ar", "shapes", "vqgan", "base", 0)["stage2"]["cond_dropout"] == 0.1
    for task in ("unconditional", "completion", "semantic"):  # no caption, no null caption: not retrained
        assert jobs.stage2_training(guided, task, "shapes", "vqgan", "base", 0) == \
            jobs.stage2_training(cfg, task, "shapes", "vqgan", "base", 0)
    assert jobs.labelmap_vq(guided, "shapes") == jobs.labelmap_vq(cfg, "shapes")


def test_samples_per_caption_resamples_only_the_caption_scored_tasks_without_retraining():
    cfg = smoke()
    cfg["stage2"]["samples_per_caption"] = 1
    more = smoke()
    more["stage2"]["samples_per_caption"] = 4
    for task in ("t2i_ar", "t2i_diffusion"):
        assert "samples_per_caption" not in jobs.stage2_job(cfg, task, "shapes", "vqgan", "base", 0)  # 1: as before
        assert jobs.stage2_training(more, task, "shapes", "vqgan", "base", 0) == \
            jobs.stage2_training(cfg, task, "shapes", "vqgan", "base", 0)  # the checkpoint stays
        assert jobs.stage2_job(more, task, "shapes", "vqgan", "base", 0)["samples_per_caption"] == 4
    for task in ("unconditional", "completion", "semantic"):  # not scored against captions: nothing reruns
        assert jobs.stage2_job(more, task, "shapes", "vqgan", "base", 0) == \
            jobs.stage2_job(cfg, task, "shapes", "vqgan", "base", 0)


@pytest.mark.parametrize("key,value", [("truncation_rate", 0.86), ("diffusion_sampler", "purity")])
def test_the_diffusion_sampling_keys_resample_only_the_diffusion_without_retraining(key, value):
    cfg, cut = smoke(), smoke()
    cut["stage2"][key] = value
    assert key not in jobs.stage2_job(cfg, "t2i_diffusion", "shapes", "vqgan", "base", 0)  # the default: as before
    assert jobs.stage2_job(cut, "t2i_diffusion", "shapes", "vqgan", "base", 0)[key] == value
    for task in ("t2i_diffusion", "t2i_ar", "unconditional", "completion", "semantic"):
        assert jobs.stage2_training(cut, task, "shapes", "vqgan", "base", 0) == \
            jobs.stage2_training(cfg, task, "shapes", "vqgan", "base", 0)  # no checkpoint retrains
    for task in ("t2i_ar", "unconditional", "completion", "semantic"):  # not a discrete diffusion: nothing reruns
        assert jobs.stage2_job(cut, task, "shapes", "vqgan", "base", 0) == \
            jobs.stage2_job(cfg, task, "shapes", "vqgan", "base", 0)


def test_samples_of_the_diffusion_that_redrew_visible_codes_are_not_reused_but_its_checkpoint_is():
    cfg = smoke()
    assert jobs.stage2_job(cfg, "t2i_diffusion", "shapes", "vqgan", "base", 0)["keeps_visible_codes"] is True
    assert "keeps_visible_codes" not in jobs.stage2_training(cfg, "t2i_diffusion", "shapes", "vqgan", "base", 0)
    for task in ("t2i_ar", "unconditional", "completion", "semantic"):
        assert "keeps_visible_codes" not in jobs.stage2_job(cfg, task, "shapes", "vqgan", "base", 0)


def test_the_diffusion_loss_retrains_only_the_diffusion_and_x0_keeps_every_hash():
    cfg, vlb = smoke(), smoke()
    vlb["stage2"]["diffusion_loss"] = "vlb"
    assert "diffusion_loss" not in jobs.stage2_training(cfg, "t2i_diffusion", "shapes", "vqgan", "base", 0)["stage2"]
    assert jobs.stage2_training(vlb, "t2i_diffusion", "shapes", "vqgan", "base", 0)["stage2"]["diffusion_loss"] == "vlb"
    for task in ("t2i_ar", "unconditional", "completion", "semantic"):  # not a discrete diffusion: nothing reruns
        assert jobs.stage2_job(vlb, task, "shapes", "vqgan", "base", 0) == jobs.stage2_job(cfg, task, "shapes", "vqgan",
                                                                                          "base", 0)
    assert jobs.labelmap_vq(vlb, "shapes") == jobs.labelmap_vq(cfg, "shapes")


def test_round_zero_draws_the_one_sample_per_caption_seeds_and_later_rounds_draw_others():
    from lgvq.pipeline.stage2 import attribute_notes, sample_draw_seed

    assert [sample_draw_seed(17, c, 0) for c in range(3)] == [17 * 100_003 + c for c in range(3)]
    seeds = {sample_draw_seed(s, c, r) for s in range(3) for c in range(40) for r in range(8)}
    assert len(seeds) == 3 * 40 * 8
    assert attribute_notes(100)["attribute_accuracy"].endswith("; 100 captions")
    assert attribute_notes(100, "AR-GPT", samples_per_caption=4)["caption_following[AR-GPT]"].endswith(
        "; 100 captions x 4 samples each")
