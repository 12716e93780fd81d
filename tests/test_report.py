"""The HTML report: one naming scheme for rows, the tables in the paper's order with their
baseline / ceiling rows set apart, a figure per table, curves overlaid per tokenizer, pictures at a
readable size, and only the runs the config has (nothing globbed)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from report_fixture import IMAGE_PX, make_results

from lgvq.pipeline import paths, plan
from lgvq.pipeline.report import build_report, report_inputs
from lgvq.tables import figures
from lgvq.tables.build import build_table
from lgvq.tables.names import display_name
from lgvq.tables.report import MIN_IMAGE_PX, md_table_html, paper_order, png_size


@pytest.mark.parametrize("tokenizer, variant, how, name", [
    ("vqgan", "base", None, "VQ-GAN"),
    ("vqgan", "lg", None, "VQ-GAN+LG"),
    ("cvq", "lg", None, "CVQ+LG"),
    ("vqvae", "base", None, "VQ-VAE"),
    ("vqct", "lg", None, "VQCT+LG"),
    ("vqgan", "mtp-ras", None, "VQ-GAN+Lmtp+Lras"),
    ("vqgan", "gsa", None, "VQ-GAN+Lgsa"),
    ("my_tok", "lg", None, "my_tok+LG"),               # a tokenizer the paper does not have: its config key
    ("taming_ft", "lg", "fine-tuned", "taming_ft+LG (fine-tuned)"),
    ("vqgan", "lg-x10", None, "VQ-GAN+lg-x10"),        # a variant that is no set of LG terms: as spelled
])
def test_display_name(tokenizer, variant, how, name):
    assert display_name(tokenizer, variant, how) == name


def test_tables_use_the_one_naming_scheme_for_paper_and_added_rows():
    recs = [{"kind": "unconditional", "dataset": "shapes", "tokenizer": t, "variant": v, "seed": 0,
             "metrics": {"FID[shapes-cnn]": 10.0}} for t in ("vqgan", "cvq") for v in ("base", "lg")]
    rows = list(dict.fromkeys(build_table("unconditional", recs, dataset_columns={"shapes": None})["row"]))
    # Table 7's paper row "LG-VQ" and the added CVQ rows are spelled alike
    assert rows[-4:] == ["VQ-GAN", "VQ-GAN+LG", "CVQ", "CVQ+LG"]
    assert "LG-VQ" not in rows and "cvq+LG" not in rows


def test_paper_order_numbers_tables_then_figures_then_the_rest():
    shuffled = ["codebook_usage", "dataset_stats", "vqa", "my_plugin", "reconstruction", "vqct_lg", "ablation"]
    assert paper_order(shuffled) == ["reconstruction", "ablation", "vqa", "vqct_lg", "codebook_usage",
                                     "dataset_stats", "my_plugin"]
    assert paper_order(list(plan.PAPER_TABLE_IDS))[:3] == ["reconstruction", "ablation", "masked_word"]


MD = """# Table 9: vqa

Results of VQA.

| Model | shapes Accuracy% ↑ |
|---|---|
| VQ-GAN | 30.00 ± 1.00 (n=3) · paper 37.82 |
| VQ-GAN+LG | 31.00 ± 1.00 (n=3) Δ +1.00 [+0.10, +1.90]* · paper 40.97 |
| baseline: blind-head | 25.00 ± 0.50 (n=3) |
| ceiling: oracle | 90.00 (n=1) |

Cells: ours as mean.
- note a: something
"""


def test_markdown_table_sets_baseline_and_ceiling_rows_apart_and_greys_paper_numbers():
    title, body = md_table_html(MD)
    assert title == "Table 9: vqa"
    assert '<tr class="baseline first-special"><td>baseline: blind-head</td>' in body
    assert '<tr class="ceiling"><td>ceiling: oracle</td>' in body
    assert '<span class="paper">paper 40.97</span>' in body and "Δ +1.00 [+0.10, +1.90]*" in body  # as written
    assert "Results of VQA." in body and "<li>note a: something</li>" in body


def _table_csv(with_intervals: bool) -> pd.DataFrame:
    rows = []
    for tok in ("vqgan", "cvq"):
        for var, mean, delta in (("base", 30.0, np.nan), ("lg", 32.0, 2.0)):
            row = {"row": display_name(tok, var), "tokenizer": tok, "variant": var, "dataset": "shapes",
                   "metric": "Accuracy", "direction": "higher", "ours_mean": mean, "ours_std": 1.0, "n_seeds": 3,
                   "paper": np.nan, "delta_vs_base": delta, "status": "ours"}
            if with_intervals:
                row |= {"row_kind": "model", "delta_lo": delta - 1.5, "delta_hi": delta + 1.5, "delta_n": 3}
            rows.append(row)
    special = {"row": "baseline: blind-head", "tokenizer": "*", "variant": "baseline:blind-head", "dataset": "shapes",
               "metric": "Accuracy", "direction": "higher", "ours_mean": 25.0, "ours_std": 0.0, "n_seeds": 3,
               "paper": np.nan, "delta_vs_base": np.nan, "status": "ours"}
    if with_intervals:
        special |= {"row_kind": "baseline", "delta_lo": np.nan, "delta_hi": np.nan, "delta_n": 0}
    return pd.DataFrame([*rows, special])


@pytest.mark.parametrize("with_intervals", [True, False])
def test_table_figure_with_and_without_interval_columns(with_intervals):
    df = _table_csv(with_intervals)
    png, shows_delta = figures.table_figure(df)
    assert png_size(png) is not None and shows_delta is with_intervals
    # baseline rows are told apart with or without the row_kind column
    assert list(figures.row_kinds(df)) == ["model"] * 4 + ["baseline"]


def test_table_figure_is_none_without_numbers_of_ours():
    df = _table_csv(False).assign(n_seeds=0)
    assert figures.table_figure(df) is None


def test_seed_band_is_mean_and_min_max_over_seeds_thinned():
    logs = [pd.DataFrame({"step": np.arange(1, 1001), "loss": np.full(1000, v)}) for v in (1.0, 3.0)]
    logs[1].loc[::2, "loss"] = np.nan  # a seed that logged every other step only
    band = figures.seed_band(logs, "loss", max_points=100)
    assert len(band.step) <= 100 and band.step[0] == 1 and band.step[-1] == 1000 and band.seeds == 2
    both = band.step % 2 == 0
    assert np.allclose(band.mean[both], 2.0) and np.allclose(band.lo[both], 1.0) and np.allclose(band.hi[both], 3.0)
    assert np.allclose(band.mean[~both], 1.0)
    assert figures.seed_band(logs, "no_such_column") is None


def test_validation_columns_sit_beside_their_training_column():
    assert figures.ordered_columns(["rec", "val_rec", "loss", "val/other", "val_loss", "gan"]) == \
        ["rec", "val_rec", "loss", "val_loss", "gan", "val/other"]


def test_train_log_name_is_the_training_loops():
    from lgvq.train.checkpoint import LOG_NAME

    assert paths.TRAIN_LOG_NAME == LOG_NAME


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    cfg = make_results(root)
    out = build_report(cfg, root / "report.html")
    return cfg, out.read_text()


def test_report_sections_and_contents_links(report):
    _, text = report
    ids = re.findall(r'id="([^"]+)"', text)
    links = re.findall(r'href="#([^"]+)"', text)
    assert set(links) <= set(ids) and len(ids) == len(set(ids))
    for section in ("tables", "curves", "pictures", "provenance"):
        assert section in links
    assert "<details><summary>Every job's manifest</summary>" in text


def test_report_tables_are_in_the_papers_order(report):
    cfg, text = report
    positions = [text.index(f'id="table-{t}"') for t in paper_order(plan.table_ids(cfg))]
    assert positions == sorted(positions)
    where = lambda t: text.index(f'id="table-{t}"')  # noqa: E731
    assert where("reconstruction") < where("ablation") < where("codebook_usage") < where("dataset_stats")


def test_report_has_a_figure_per_table_with_numbers_and_curves_per_tokenizer(report):
    _, text = report
    recon = text[text.index('id="table-reconstruction"'):text.index('id="table-ablation"')]
    assert "<figure>" in recon and "sample std" in recon
    for title in ("shapes · VQ-GAN tokenizer", "shapes · mine tokenizer"):
        assert f">{title}</h3>" in text
    assert "band: min–max over seeds" in text


def test_report_shows_only_the_configs_runs(report):
    _, text = report
    assert "stale_tok" not in text
    inputs_titles = [g.title for g in report_inputs(report[0]).curves]
    assert inputs_titles == ["shapes · VQ-GAN tokenizer", "shapes · mine tokenizer"]


def test_pictures_are_upscaled_to_a_readable_size(report):
    _, text = report
    grids = re.findall(r'<img class="px" alt="[^"]*val originals[^"]*"[^>]*width="(\d+)"', text)
    assert len(grids) == 4  # one per tokenizer x variant (first seed)
    per_image = int(grids[0]) / 8  # 8 validation images per row
    assert per_image >= MIN_IMAGE_PX - 1 and MIN_IMAGE_PX // IMAGE_PX > 1
    books = re.findall(r'<img class="px" alt="[^"]*: codebook"[^>]*width="(\d+)"', text)
    assert books and all(int(w) >= 256 for w in books)


def test_report_stays_small(report):
    assert len(report[1].encode()) < 2_000_000
