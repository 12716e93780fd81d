"""The LG dose-response: its runs in the plan (x1 is the +LG run), their job hashes, the scaled LG weights
that reach the losses, and its table and plot built from records."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from lgvq.config import (VARIANT_PATTERN, ConfigError, dose_variant, lg_weights_for, parse_variant,
                         tokenizer_job_slice, validate_config)
from lgvq.manifest import config_hash
from lgvq.metrics.record import MetricRecord
from lgvq.pipeline import plan

TINY = {"ch": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "z_channels": 8, "embed_dim": 8,
        "n_embed": 16, "disc_start": 2, "disc_ch": 8, "disc_layers": 1}
BASE = {"datasets": {"shapes": {"source": "shapes", "image_size": 16}},
        "tokenizers": {"vqgan": {"class": "vqgan", "params": TINY}, "vqvae": {"class": "vqvae"}},
        "seeds": [0, 1, 2], "text_encoder": {"name": "minilm", "max_length": 12}, "lg": {"layers": 1},
        "downstream": {"enabled": True}}


def dosed(**dose) -> dict:
    frozen = {"frozen": {"class": "vqvae", "checkpoint": "/nonexistent/model.pt", "variants": ["base"]}}
    tokenizers = {**BASE["tokenizers"], **(frozen if dose.get("tokenizer") == "frozen" else {})}
    return validate_config({**BASE, "tokenizers": tokenizers, "dose_response": {"enabled": True, **dose}})


def test_the_plan_runs_each_multiplier_once_and_x1_is_the_lg_run_of_the_other_tables():
    cfg = dosed(multipliers=[100, 1, 10], seeds=[0, 1])
    assert plan.dose_variants(cfg) == {0.0: "base", 1.0: "lg", 10.0: "lg-x10", 100.0: "lg-x100"}
    runs = list(plan.tokenizer_runs(cfg))
    assert len(runs) == len(set(runs))
    without = list(plan.tokenizer_runs(validate_config(BASE)))
    # 2 tokenizers x {base, lg} x 3 seeds, plus the 4 Table 2 variants x 3 seeds; the dose adds x10 and x100 only
    added = sorted((r.variant, r.seed) for r in runs if r not in without)
    assert added == [("lg-x10", 0), ("lg-x10", 1), ("lg-x100", 0), ("lg-x100", 1)]
    assert not any(r.variant == "lg-x1" for r in runs)
    files = plan.table_inputs(cfg, "dose_response")
    assert {(f.parts[-5], f.parts[-3], f.parts[-2]) for f in files} == {
        (kind, v, f"seed{s}") for kind in ("reconstruction", "text_alignment", "vqa")
        for v in ("base", "lg", "lg-x10", "lg-x100") for s in (0, 1)}
    assert "dose_response" in plan.table_ids(cfg) and "dose_response" not in plan.table_ids(validate_config(BASE))


def test_vqa_column_follows_its_switch_and_the_downstream_stage():
    assert not any("/vqa/" in str(f) for f in plan.table_inputs(dosed(vqa=False), "dose_response"))
    off = validate_config({**BASE, "downstream": {"enabled": False}, "dose_response": {"enabled": True}})
    assert not any("/vqa/" in str(f) for f in plan.table_inputs(off, "dose_response"))


def test_the_job_hash_differs_per_multiplier_and_x1_keeps_the_lg_hash():
    cfg = dosed(multipliers=[1, 10, 100])
    variants = plan.dose_variants(cfg).values()
    hashes = {v: config_hash(tokenizer_job_slice(cfg, "shapes", "vqgan", v, 0)) for v in variants}
    assert len(set(hashes.values())) == 4
    # enabling the dose-response leaves every existing run (base, +LG) as it was: no retraining
    plain = validate_config(BASE)
    for v in ("base", "lg"):
        assert hashes[v] == config_hash(tokenizer_job_slice(plain, "shapes", "vqgan", v, 0))


def test_the_multiplier_scales_all_three_lg_weights():
    cfg = validate_config(BASE)
    lg = lg_weights_for(cfg, "shapes", "lg")
    assert lg_weights_for(cfg, "shapes", "lg-x10") == pytest.approx({k: 10 * w for k, w in lg.items()})
    assert lg_weights_for(cfg, "shapes", "mtp-x0.5") == pytest.approx({"gsa": 0.0, "mtp": 0.005, "ras": 0.0})
    assert tokenizer_job_slice(cfg, "shapes", "vqgan", "lg-x100", 0)["lg_weights"] == pytest.approx(
        {k: 100 * w for k, w in lg.items()})


def fake_cache(width: int = 8, vocab: int = 30) -> SimpleNamespace:
    return SimpleNamespace(token_embeddings=np.random.default_rng(0).standard_normal((vocab, width)).astype(np.float32),
                           width=width)


def test_the_losses_the_lg_module_returns_are_scaled_by_the_multiplier():
    import torch

    from lgvq.pipeline.tokenizer import build_models
    from lgvq.text.base import TextFeatures

    cfg = validate_config(BASE)
    B, L, DT = 3, cfg["text_encoder"]["max_length"], 8
    g = torch.Generator().manual_seed(0)
    valid = torch.ones(B, L, dtype=torch.bool)
    special = torch.zeros(B, L, dtype=torch.bool)
    special[:, 0] = special[:, -1] = True
    text = TextFeatures(torch.randint(1, 30, (B, L), generator=g), torch.randn(B, L, DT, generator=g), valid, special,
                        torch.randn(B, DT, generator=g))
    z = torch.randn(B, 8, 8, 8, generator=g)
    terms = {}
    for variant in ("lg", "lg-x10"):
        torch.manual_seed(0)  # the same initialisation: only the weights differ
        _, lg, weights = build_models(cfg, "shapes", "vqgan", variant, fake_cache())
        assert lg.weights == weights == lg_weights_for(cfg, "shapes", variant)
        terms[variant] = lg.eval()(z, text, torch.Generator().manual_seed(1))
    assert set(terms["lg"]) == {"gsa", "mtp", "ras"}
    for k, v in terms["lg"].items():
        assert terms["lg-x10"][k].item() == pytest.approx(10 * v.item(), rel=1e-5)


@pytest.mark.parametrize("variant, message", [("lg-x1", "write it as 'lg'"), ("lg-x10.0", "write it as 'lg-x10'"),
                                              ("lg-x0", "x0 is 'base'"), ("base-x10", "unknown variant"),
                                              ("lgx10", "unknown variant")])
def test_a_run_has_one_name(variant, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_variant(variant)


def test_variant_names_round_trip_and_match_the_wildcard():
    for v, m in [("lg", 10), ("lg", 0.5), ("mtp-ras", 3), ("lg", 1)]:
        name = dose_variant(v, m)
        assert parse_variant(name) == (v, float(m)) and re.fullmatch(VARIANT_PATTERN, name)
    assert dose_variant("lg", 0) == "base"
    assert not re.fullmatch(VARIANT_PATTERN, "lg-x10/seed0") and not re.fullmatch(VARIANT_PATTERN, "nope")


@pytest.mark.parametrize("dose, key", [({"tokenizer": "nope"}, "dose_response.tokenizer"),
                                       ({"seeds": [7]}, "dose_response.seeds"),
                                       ({"multipliers": [10, 10.0000001]}, "dose_response.multipliers"),
                                       ({"multipliers": [0]}, "dose_response.multipliers"),
                                       ({"tokenizer": "frozen"}, "dose_response.tokenizer")])
def test_bad_dose_settings_name_their_key(dose, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        dosed(**dose)


def records() -> list[MetricRecord]:
    """base / x1 / x10 on seeds 0 and 1: PSNR falls with the dose by 1 dB per step (seed 1: 0.5 dB higher)."""
    out = []
    for i, variant in enumerate(["base", "lg-x10", "lg"]):
        for seed in (0, 1):
            jitter = 0.1 if variant == "lg-x10" and seed else 0.0
            psnr = 20.0 - {"base": 0, "lg": 1, "lg-x10": 2}[variant] + 0.5 * seed + jitter
            out.append(MetricRecord("reconstruction", "shapes", "vqgan", variant, seed,
                                    {"PSNR": psnr, "FID[shapes-cnn]": 100.0 + i + seed}))
            recall = {} if variant == "base" else {"Recall@1[Mask-1]": 0.4 + 0.1 * seed, "I2T-R@5": 0.2,
                                                   "Recall@1[Mask-1, leak-free]": 0.25,
                                                   "Recall@1[Mask-3]": 0.3}  # a protocol the table leaves out
            out.append(MetricRecord("text_alignment", "shapes", "vqgan", variant, seed, recall,
                                    not_computed={"Recall@1": "no masked-text decoder"} if variant == "base" else {}))
    return out


def test_the_table_orders_rows_by_multiplier_and_pairs_delta_vs_base_by_seed():
    from lgvq.tables.dose import dose_frame

    df = dose_frame(records(), dataset_columns={"shapes": None})
    assert list(dict.fromkeys(df["row"])) == ["vqgan ×0 (base)", "vqgan ×1 (+LG)", "vqgan ×10"]
    # the declared columns in their order, FID under its extractor's name; Mask-3 is Table 3's, not shown
    columns = ["Recall@1[Mask-1]", "Recall@1[Mask-1, leak-free]", "I2T-R@5", "PSNR", "FID[shapes-cnn]"]
    assert list(df[df.lg_multiplier == 10].metric) == columns
    psnr = df[df.metric == "PSNR"].set_index("lg_multiplier")
    assert psnr.loc[0.0, "ours_mean"] == pytest.approx(20.25) and math.isnan(psnr.loc[0.0, "delta_vs_base"])
    assert psnr.loc[1.0, "delta_vs_base"] == pytest.approx(-1.0) and psnr.loc[1.0, "delta_n"] == 2
    x10 = psnr.loc[10.0]
    assert x10.delta_vs_base == pytest.approx(-1.95) and x10.delta_lo < -1.95 < x10.delta_hi
    assert x10.delta_excludes_zero  # paired differences -2.0 and -1.9: the seed offset cancels
    base = df[df.lg_multiplier == 0]
    assert list(base.metric) == columns  # every column, the base run's recall and retrieval as "not computed"
    assert list(base[base.metric == "I2T-R@5"].note) == ["the base run has no masked-text decoder"]
    assert set(base[base.metric.str.startswith("Recall")].status) == {"not computed"}


def test_write_makes_the_table_files_and_a_png_plot(tmp_path):
    from lgvq.tables.dose import write_dose_response

    paths = write_dose_response("dose_response", [r.to_json() for r in records()], tmp_path,
                                dataset_columns={"shapes": None}, experiment="unit")
    assert [p.name for p in paths] == [f"dose_response.{e}" for e in ("csv", "md", "tex", "png")]
    png = (tmp_path / "dose_response.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    md = (tmp_path / "dose_response.md").read_text()
    assert "the paper has none" in md and "`dose_response.png`" in md and "\n| vqgan ×10 | " in md
    assert "Δ−1.95 [" in md
    csv = pd.read_csv(tmp_path / "dose_response.csv")
    assert sorted(csv["lg_multiplier"].unique()) == [0.0, 1.0, 10.0]
    with pytest.raises(KeyError, match="dose_response"):
        write_dose_response("ablation", [], tmp_path, dataset_columns={})
