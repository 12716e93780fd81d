"""Baseline and ceiling rows (lgvq.pipeline.references): what each measures, and that the DAG's tables list them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lgvq.config import load_config
from lgvq.lg.evaluate import MaskedRecall, masked_positions
from lgvq.pipeline import jobs, plan
from lgvq.pipeline.reference_images import disjoint_split, mean_image, shuffle_positions
from lgvq.pipeline.reference_text import PriorDecoder, position_prior, prior_recall, random_like
from lgvq.pipeline.references import REFERENCES, enabled_references, get_reference
from lgvq.text.base import TextFeatures

ROOT = Path(__file__).resolve().parent.parent


def smoke() -> dict:
    return load_config(ROOT / "config" / "smoke.yaml")


def captions(ids: list[list[int]]) -> TextFeatures:
    """Token-id captions: position 0 is a special [CLS], the rest real words, 0 = padding."""
    t = torch.as_tensor(ids)
    valid = t != 0
    special = torch.zeros_like(valid)
    special[:, 0] = True
    B, L = t.shape
    return TextFeatures(t, torch.zeros(B, L, 4), valid, special, torch.zeros(B, 4))


# --- the tables list the references' records ---------------------------------------------------------

def test_each_table_lists_its_references_records_after_the_models():
    cfg = smoke()
    recon = [str(m.path) for m in plan.table_metric_inputs(cfg, "reconstruction")]
    assert any("reconstruction/reference/real-vs-real/data/seed0/metrics.json" in p for p in recon)
    assert any("reconstruction/reference/one-code/data/seed0/metrics.json" in p for p in recon)
    assert not any("/reference/" in p for p in recon[: len(recon) - 2])  # the models come first
    masked = [str(p) for p in plan.table_inputs(cfg, "masked_word")]
    assert sum("/reference/word-prior/" in p or "/reference/chance/" in p for p in masked) == 2
    wcs = [str(p) for p in plan.table_inputs(cfg, "word_code_similarity")]
    # per tokenizer, on the base runs of `references.tokenizers` only (the smoke config: vqgan)
    assert [p for p in wcs if "/reference/" in p] == [
        str(Path(cfg["results_dir"]) / "shapes/eval/text_alignment/reference/random-codebook/vqgan/seed0/metrics.json")]
    t2i = [str(p) for p in plan.table_inputs(cfg, "text_to_image")]
    assert {p.split("/reference/")[1].split("/")[0] for p in t2i if "/reference/" in p} == {
        "real-vs-real", "shuffled-codes", "decoded-codes", "always-absent", "real-images"}
    assert not any("/reference/" in str(p) for p in plan.table_inputs(cfg, "ablation"))


def test_references_can_be_switched_off_whole_or_by_name():
    cfg = smoke()
    cfg["references"]["skip"] = ["one-code"]
    assert "one-code" not in {r.name for r in enabled_references(cfg)}
    assert not any("one-code" in str(p) for p in plan.table_inputs(cfg, "reconstruction"))
    cfg["references"]["enabled"] = False
    assert not any("/reference/" in str(p) for t in plan.table_ids(cfg) for p in plan.table_inputs(cfg, t))
    cfg["references"] = {"enabled": True, "skip": ["one-cod"], "tokenizers": None, "budget_note": None}
    with pytest.raises(Exception, match="references.skip.*one-cod"):
        enabled_references(cfg)


def test_a_per_tokenizer_reference_hashes_its_tokenizer_run_and_a_data_only_one_does_not():
    cfg = smoke()
    shuffled = jobs.reference(cfg, "shuffled-codes", "shapes", "vqgan", 0)
    assert shuffled["run"] == jobs.tokenizer(cfg, "shapes", "vqgan", "base", 0)
    real = jobs.reference(cfg, "real-vs-real", "shapes", None, 0)
    other = smoke()
    other["tokenizers"]["vqgan"]["params"]["n_embed"] = 64
    assert jobs.job_hash(jobs.reference(other, "real-vs-real", "shapes", None, 0)) == jobs.job_hash(real)
    assert jobs.job_hash(jobs.reference(other, "shuffled-codes", "shapes", "vqgan", 0)) != jobs.job_hash(shuffled)


def test_every_reference_is_a_row_kind_the_table_builder_renders():
    from lgvq.tables.build import row_kind

    for ref in REFERENCES:
        assert row_kind(ref.variant) == ref.row
    with pytest.raises(Exception, match="unknown reference"):
        get_reference("no-such")


# --- what each reference measures ------------------------------------------------------------------

def test_real_vs_real_compares_the_models_reference_with_as_many_other_test_images():
    ref, other, same = disjoint_split(100, 30)
    assert (ref, other, same) == (range(0, 30), range(30, 60), True)   # the models' first 30, then the next 30
    ref, other, same = disjoint_split(50, 30)                          # too few: two halves, flagged
    assert (ref, other, same) == (range(0, 25), range(25, 50), False) and not set(ref) & set(other)


def test_the_one_code_image_is_the_per_pixel_mean_over_every_batch():
    images = torch.randn(123, 3, 4, 4)
    data = [{"image": x} for x in images]
    assert torch.allclose(mean_image(data, range(123)), images.mean(0), atol=1e-6)


def test_shuffled_codes_keep_each_images_codes_and_lose_their_layout():
    codes = np.arange(2 * 8 * 8).reshape(2, 8, 8)
    out = shuffle_positions(codes, seed=3)
    for a, b in zip(codes, out):
        assert sorted(a.ravel()) == sorted(b.ravel())
        assert (a != b).mean() > 0.9
    assert np.array_equal(out, shuffle_positions(codes, seed=3)) and not np.array_equal(out, shuffle_positions(codes, 4))


def test_the_word_prior_predicts_the_most_frequent_training_word_at_each_position():
    train = captions([[101, 7, 8, 9], [101, 7, 5, 9], [101, 6, 8, 0]])
    counts = position_prior(train.token_ids.numpy(), (train.valid & ~train.special).numpy())
    assert list(counts.argmax(1)[1:3]) == [7, 8]
    assert counts[0].sum() == 0  # the special token is never a masked word


def test_the_word_prior_is_scored_at_the_lg_decoders_masked_positions():
    test = captions([[101, 7, 8, 9, 4], [101, 3, 8, 9, 0], [101, 7, 2, 0, 0]] * 20)
    prior = PriorDecoder(np.array([0, 7, 8, 9, 4]))
    recall, scored, skipped = prior_recall(prior, [test], k=1, seed=5)

    class Oracle:  # knows the answers: used to replay the positions the LG protocol masks
        def masked_top1(self, z_q, text, masked):
            return text.token_ids[masked]

    masks = MaskedRecall(1, 5)
    hits = total = 0
    for i in range(len(test.token_ids)):  # one caption at a time: batching does not move the positions
        m, _ = masked_positions(test[i : i + 1], 1, generator=masks.generator)
        want = test.token_ids[i][m[0]]
        hits += int((torch.as_tensor([0, 7, 8, 9, 4])[m[0].nonzero().squeeze(1)] == want).sum())
        total += int(m.sum())
    assert recall == pytest.approx(hits / total) and scored == 60 and skipped == 0
    assert 0 < recall < 1
    oracle_recall, _, _ = prior_recall(Oracle(), [test], k=1, seed=5)
    assert oracle_recall == 1.0


def test_the_random_codebook_has_the_trained_ones_shape_and_scale():
    trained = np.random.default_rng(0).normal(0, 0.3, size=(512, 16)).astype(np.float32)
    r = random_like(trained, seed=1)
    assert tuple(r.shape) == trained.shape and float(r.std()) == pytest.approx(0.3, rel=0.05)
    assert torch.equal(r, random_like(trained, seed=1)) and not torch.equal(r, random_like(trained, seed=2))


def test_always_absent_scores_the_share_of_absent_slots_with_the_samples_scorer():
    from lgvq.metrics.attributes import attribute_hits

    wanted = torch.tensor([[1, 0, 0, 1], [0, 0, 1, 0]], dtype=torch.float32)
    mask = torch.tensor([True, True, True, False])
    right, scored = attribute_hits(lambda x: torch.full((len(x), 4), -1.0), torch.zeros(2, 3, 4, 4), wanted, mask)
    assert (right, scored) == (4, 6)  # of the 6 scored cells, 4 are absent


def test_each_condition_is_mismatched_with_the_next_ones_caption_cyclically():
    from lgvq.metrics.attributes import mismatched

    assert mismatched(["a", "b", "c"]) == ["b", "c", "a"]
    with pytest.raises(ValueError, match="at least 2"):
        mismatched(["a"])


def test_caption_following_is_zero_for_images_that_ignore_their_caption_and_positive_for_images_that_show_it():
    from lgvq.metrics.attributes import CaptionFollowing, mismatched

    wanted = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=torch.float32)
    other = torch.stack(mismatched(wanted))
    mask = torch.tensor([True, True, True])
    images = torch.zeros(4, 3, 4, 4)

    def score(classifier, batches=((0, 4),)) -> dict:
        f = CaptionFollowing()
        for a, b in batches:
            f.add(classifier, images[a:b], wanted[a:b], other[a:b], mask)
        return f.metrics()

    absent = score(lambda x: torch.full((len(x), 3), -1.0))
    assert absent["caption_following"] == 0.0 and absent["attribute_accuracy"] == pytest.approx(8 / 12)
    # a "generator" that shows exactly its caption: perfect against its own, 4 of the 12 mismatched cells wrong twice
    shown = (wanted * 2 - 1).clone()
    perfect = score(lambda x, it=iter([shown[:2], shown[2:]]): next(it), batches=((0, 2), (2, 4)))
    assert perfect["attribute_accuracy"] == 1.0
    assert perfect["caption_following"] == pytest.approx(1.0 - 6 / 12)  # rows 0->1, 1->2, 2->3 differ; 3->0 equal
    # one that always shows the same thing, whatever its caption: 0 again (the mismatched captions are the same ones)
    constant = score(lambda x: torch.tensor([[1.0, -1.0, -1.0]]).expand(len(x), 3))
    assert constant["caption_following"] == pytest.approx(0.0)


def test_chance_retrieval_is_k_over_n(monkeypatch):
    import lgvq.pipeline.reference_text as rt

    class Source:
        def records(self, split):
            return list(range(40))

    monkeypatch.setattr(rt, "dataset_source", lambda cfg, ds: Source())
    m = rt.chance({}, get_reference("chance"), "shapes", None, 0)["text_alignment"].metrics
    assert m == {"I2T-R@1": 1 / 40, "I2T-R@5": 5 / 40}


def test_text_to_image_references_fill_the_ar_generators_columns_under_stage2s_keys():
    from lgvq.pipeline.reference_images import _tagged

    assert _tagged("FID[shapes-cnn]", "AR-GPT") == "FID[shapes-cnn,AR-GPT]"
    assert _tagged("attribute_accuracy", "AR-GPT") == "attribute_accuracy[AR-GPT]"


def test_text_to_image_references_fill_exactly_the_configured_generators_columns():
    from lgvq.pipeline.reference_images import _with_ar

    cfg = smoke()
    both, _ = _with_ar(cfg, {"attribute_accuracy": 0.7}, {"attribute_accuracy": "n"})
    assert both == {"attribute_accuracy": 0.7, "attribute_accuracy[AR-GPT]": 0.7}
    cfg["stage2"]["tasks"] = ["t2i_ar"]
    assert _with_ar(cfg, {"FID[shapes-cnn]": 3.0}, {})[0] == {"FID[shapes-cnn,AR-GPT]": 3.0}


def test_the_cpu_cluster_profile_names_every_reference_rule():
    import yaml

    profile = yaml.safe_load((ROOT / "profiles" / "slurm-local" / "config.yaml").read_text())
    assert {r.rule for r in REFERENCES} <= set(profile["set-resources"])
