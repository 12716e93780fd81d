"""A learned number counts as evidence only when it beats its trivial baseline by more than the seed
spread (lgvq.tables.targets), and the table's notes name every row that does not."""

from __future__ import annotations

import math

from lgvq.metrics.record import MetricRecord
from lgvq.tables.build import build_table
from lgvq.tables.targets import baseline_note, verdicts


def rec(kind, tok, variant, seed, metrics):
    return MetricRecord(kind, "shapes", tok, variant, seed, metrics, {})


def vqa_table(base_acc, lg_acc, blind_acc):
    records = [rec("vqa", "vqgan", "base", s, {"Accuracy": a}) for s, a in enumerate(base_acc)]
    records += [rec("vqa", "vqgan", "lg", s, {"Accuracy": a}) for s, a in enumerate(lg_acc)]
    records += [rec("vqa", "*", "baseline:majority-per-type", 0, {"Accuracy": 0.20})]
    records += [rec("vqa", "*", "baseline:blind-head", s, {"Accuracy": a}) for s, a in enumerate(blind_acc)]
    return build_table("vqa", records, dataset_columns={"shapes": None})


def by_row(df):
    return {(v.row, v.metric): v for v in verdicts(df)}


def test_a_row_clears_the_strongest_baseline_only_by_more_than_the_seed_spread():
    # blind head 24 +- 1 (the strongest baseline); base 32 +- 1 clears it, +LG 25.5 +- 2 is better but within spread
    df = vqa_table([0.31, 0.32, 0.33], [0.235, 0.255, 0.275], [0.23, 0.24, 0.25])
    got = by_row(df)
    base = next(v for k, v in got.items() if k[1] == "Accuracy" and v.row == "VQ-GAN")
    lg = next(v for k, v in got.items() if k[1] == "Accuracy" and v.row != "VQ-GAN")
    assert base.baseline_row == "baseline: blind-head" and base.verdict == "clears"
    assert math.isclose(base.margin, 8.0) and math.isclose(base.spread, 1.0)
    assert lg.verdict == "does not clear" and math.isclose(lg.margin, 1.5) and math.isclose(lg.spread, 2.0)
    note = baseline_note(df)
    assert lg.row in note and "baseline: blind-head" in note and "margin 1.50 <= spread 2.00" in note
    assert f"{base.row} Accuracy" not in note


def test_worse_than_the_baseline_never_clears_and_one_seed_says_the_spread_is_unknown():
    df = vqa_table([0.19], [0.30], [0.24])
    got = {v.row: v for v in verdicts(df) if v.metric == "Accuracy"}
    base, lg = got["VQ-GAN"], next(v for r, v in got.items() if r != "VQ-GAN")
    assert base.verdict == "does not clear" and base.margin < 0
    assert lg.verdict == "spread unknown (one seed)" and math.isnan(lg.spread)


def test_a_tie_with_the_baseline_is_called_not_better_and_a_loss_worse():
    # base ties the blind head exactly (24 vs 24), +LG is below it (20 vs 24)
    note = baseline_note(vqa_table([0.23, 0.24, 0.25], [0.19, 0.20, 0.21], [0.23, 0.24, 0.25]))
    assert "VQ-GAN Accuracy 24.00 vs baseline: blind-head 24.00 (not better)" in note
    assert "Accuracy 20.00 vs baseline: blind-head 24.00 (worse)" in note


def test_lower_is_better_metrics_and_tokenizer_specific_baselines():
    records = [rec("unconditional", "vqgan", "base", s, {"FID[shapes-cnn]": f}) for s, f in enumerate([900.0, 1000.0])]
    records += [rec("unconditional", "cvq", "base", s, {"FID[shapes-cnn]": f}) for s, f in enumerate([700.0, 720.0])]
    records += [rec("unconditional", "vqgan", "baseline:shuffled-codes", 0, {"FID[shapes-cnn]": 1900.0}),
                rec("unconditional", "cvq", "baseline:shuffled-codes", 0, {"FID[shapes-cnn]": 650.0}),
                rec("unconditional", "*", "ceiling:real-vs-real", 0, {"FID[shapes-cnn]": 130.0})]
    df = build_table("unconditional", records, dataset_columns={"shapes": None})
    got = {v.row: v for v in verdicts(df)}
    vqgan, cvq = got["VQ-GAN"], got["CVQ"]
    assert vqgan.baseline_row == "baseline: shuffled-codes (vqgan)" and vqgan.verdict == "clears"   # 950 < 1900
    assert cvq.baseline_row == "baseline: shuffled-codes (cvq)" and cvq.verdict == "does not clear"  # 710 > 650
    assert all("real-vs-real" not in v.baseline_row for v in got.values())  # a ceiling is not a baseline


def test_no_note_when_every_row_clears():
    df = vqa_table([0.40, 0.41], [0.42, 0.43], [0.24, 0.25])
    assert baseline_note(df) is None


def test_the_profiles_budget_note_follows_the_baselines_note_only_when_a_row_falls_short(tmp_path):
    from lgvq.tables.build import write_table

    def records(lg_acc):
        rows = [rec("vqa", "vqgan", "base", s, {"Accuracy": a}) for s, a in enumerate([0.31, 0.32, 0.33])]
        rows += [rec("vqa", "vqgan", "lg", s, {"Accuracy": a}) for s, a in enumerate(lg_acc)]
        rows += [rec("vqa", "*", "baseline:blind-head", s, {"Accuracy": a}) for s, a in enumerate([0.23, 0.24, 0.25])]
        return [r.to_json() for r in rows]

    budget = "At the default budget; config/medium.yaml trains longer"
    write_table("vqa", records([0.235, 0.255, 0.275]), tmp_path / "short", dataset_columns={"shapes": None},
                budget_note=budget)
    md = (tmp_path / "short" / "vqa.md").read_text()
    baselines = next(line for line in md.splitlines() if "baselines" in line and "spread" in line)
    assert baselines.rstrip().endswith(budget)
    write_table("vqa", records([0.30, 0.31, 0.32]), tmp_path / "clear", dataset_columns={"shapes": None},
                budget_note=budget)
    assert budget not in (tmp_path / "clear" / "vqa.md").read_text()
