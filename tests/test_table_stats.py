"""Δ cells are paired by seed with a 95 % interval; baseline and ceiling rows are reference points, not models."""

from __future__ import annotations

import math

import pytest

from lgvq.tables.build import build_table, render_markdown
from lgvq.tables.stats import is_effect, paired_delta


def rec(tok, variant, seed, psnr, kind="reconstruction", dataset="shapes"):
    return {"kind": kind, "dataset": dataset, "tokenizer": tok, "variant": variant, "seed": seed,
            "metrics": {"PSNR": psnr}}


def cell(df, row, metric="PSNR", dataset="shapes"):
    sub = df[(df.row == row) & (df.dataset == dataset) & (df.metric == metric)]
    assert len(sub) == 1, row
    return sub.iloc[0]


def test_pairing_by_seed_removes_the_shared_seed_variation():
    # base and +LG vary together with the seed (sd 4); the paired differences are +0.9, +1, +1.1
    base = {0: 10.0, 1: 14.0, 2: 18.0}
    lg = {0: 10.9, 1: 15.0, 2: 19.1}
    d = paired_delta(lg, base)
    assert d.mean == pytest.approx(1.0) and d.n_pairs == 3
    assert 0 < d.lo < 1 < d.hi < 2 and d.excludes_zero   # unpaired, a 1-point shift is lost in the seeds' spread


def test_equal_pairs_give_a_zero_width_interval_that_is_not_an_effect():
    # a coarse count: both seeds' +LG runs use exactly one code more than their base
    d = paired_delta({0: 41.0, 1: 45.0}, {0: 40.0, 1: 44.0})
    assert (d.mean, d.lo, d.hi) == (1.0, 1.0, 1.0) and not d.excludes_zero
    records = [rec("vqgan", "base", 0, 40.0), rec("vqgan", "base", 1, 44.0),
               rec("vqgan", "lg", 0, 41.0), rec("vqgan", "lg", 1, 45.0)]
    df = build_table("reconstruction", records, dataset_columns={"shapes": None})
    assert not cell(df, "VQ-GAN+LG").delta_excludes_zero
    md = render_markdown("reconstruction", df, experiment="t", notes={})
    line = next(line for line in md.splitlines() if line.startswith("| VQ-GAN+LG |"))
    assert "Δ+1.00 [+1.00, +1.00] (equal pairs)" in line and "]*" not in line


def test_interval_is_the_student_t_interval_of_the_differences():
    d = paired_delta({0: 1.0, 1: 3.0, 2: 2.0}, {0: 0.0, 1: 0.0, 2: 0.0})   # diffs 1, 3, 2: mean 2, sd 1
    half = 4.302652729911275 / math.sqrt(3)                                # t(0.975, df=2) * sd / sqrt(n)
    assert (d.lo, d.hi) == (pytest.approx(2 - half), pytest.approx(2 + half)) and not d.excludes_zero


def test_no_interval_below_two_pairs_and_unshared_seeds_fall_back_to_means():
    one = paired_delta({0: 5.0}, {0: 3.0})
    assert one.mean == 2.0 and one.n_pairs == 1 and math.isnan(one.lo) and not one.excludes_zero
    apart = paired_delta({1: 5.0, 2: 7.0}, {0: 3.0})
    assert apart.mean == pytest.approx(3.0) and apart.n_pairs == 0 and math.isnan(apart.hi)


def test_table_cells_carry_the_interval_and_mark_effects_only():
    records = [rec("vqgan", "base", s, v) for s, v in enumerate([16.0, 17.0, 18.0])]
    records += [rec("vqgan", "lg", s, v) for s, v in enumerate([17.0, 18.1, 18.9])]   # +1, +1.1, +0.9
    records += [rec("cvq", "base", s, v) for s, v in enumerate([16.0, 17.0, 18.0])]
    records += [rec("cvq", "lg", s, v) for s, v in enumerate([18.0, 16.0, 18.0])]     # +2, -1, 0: not an effect
    df = build_table("reconstruction", records, dataset_columns={"shapes": None})
    effect, noise = cell(df, "VQ-GAN+LG"), cell(df, "CVQ+LG")
    assert effect.delta_excludes_zero and effect.delta_n == 3 and effect.delta_lo > 0
    assert not noise.delta_excludes_zero and noise.delta_lo < 0 < noise.delta_hi
    md = render_markdown("reconstruction", df, experiment="t", notes={})
    vq_line = next(line for line in md.splitlines() if line.startswith("| VQ-GAN+LG |"))
    cvq_line = next(line for line in md.splitlines() if line.startswith("| CVQ+LG |"))
    assert "Δ+1.00 [+0.75, +1.25]*" in vq_line
    assert "Δ+0.33 [" in cvq_line and "]*" not in cvq_line


def test_baseline_and_ceiling_rows_follow_the_models_without_a_delta():
    records = [rec("vqgan", "base", 0, 16.0), rec("vqgan", "lg", 0, 17.0),
               rec("*", "ceiling:real-vs-real", 0, 40.0), rec("*", "baseline:one-code", 0, 9.0),
               rec("vqgan", "baseline:shuffled-codes", 0, 8.0)]
    df = build_table("reconstruction", records, dataset_columns={"shapes": None})
    ours = df[(df.dataset == "shapes") & (df.metric == "PSNR")]
    assert list(ours.row) == ["VQ-GAN", "VQ-GAN+LG", "baseline: one-code", "baseline: shuffled-codes (vqgan)",
                              "ceiling: real-vs-real"]
    assert list(ours.row_kind) == ["model", "model", "baseline", "baseline", "ceiling"]
    ceiling = cell(df, "ceiling: real-vs-real")
    assert ceiling.status == "ceiling" and ceiling.ours_mean == 40.0 and math.isnan(ceiling.delta_vs_base)
    assert "paper" not in df[df.row_kind != "model"].status.tolist()


def test_figure_markers_use_the_same_rule_as_the_star():
    assert is_effect(0.5, 1.5) and is_effect(-2.0, -0.1)
    assert not is_effect(-1.0, 1.0) and not is_effect(1.0, 1.0) and not is_effect(math.nan, math.nan)
