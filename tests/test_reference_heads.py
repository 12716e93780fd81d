"""The understanding tasks' baselines (lgvq.pipeline.reference_heads): what each predicts, scored by the heads'
metric code, and that the tables list their records."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import lgvq.pipeline.reference_heads as rh
from lgvq.config import load_config
from lgvq.data.base import ImageRecord, QARecord, RefRecord
from lgvq.pipeline import jobs, plan
from lgvq.pipeline.references import get_reference

ROOT = Path(__file__).resolve().parent.parent


def smoke() -> dict:
    return load_config(ROOT / "config" / "smoke.yaml")


class Source:
    """A toy dataset source: the splits given, read as the heads read them."""

    def __init__(self, qa=None, refs=None, records=None) -> None:
        self._qa, self._refs, self._records = qa or {}, refs or {}, records or {}

    def qa(self, split):
        return self._qa[split]

    def refs(self, split):
        return self._refs[split]

    def records(self, split):
        return self._records[split]

    def splits(self):
        return list(self._records)


# --- the tables list them ----------------------------------------------------------------------------

@pytest.mark.parametrize("table, names", [("vqa", ["majority-per-type", "blind-head"]),
                                          ("grounding", ["mean-box", "text-only-head"]),
                                          ("captioning", ["most-frequent-caption"])])
def test_each_understanding_table_lists_its_baselines_after_the_models(table, names):
    files = [str(m.path) for m in plan.table_metric_inputs(smoke(), table)]
    tail = files[-len(names):]
    assert tail == [str(Path(smoke()["results_dir"]) / f"shapes/eval/{table}/reference/{n}/data/seed0/metrics.json")
                    for n in names]
    assert not any("/reference/" in f for f in files[: -len(names)])


def test_the_captioning_baseline_hashes_the_test_images_it_scores():
    cfg = smoke()
    before = jobs.job_hash(jobs.reference(cfg, "most-frequent-caption", "shapes", None, 0))
    cfg["downstream"]["eval_limit"] = 5
    assert jobs.job_hash(jobs.reference(cfg, "most-frequent-caption", "shapes", None, 0)) != before
    assert "eval_limit" not in jobs.reference(cfg, "majority-per-type", "shapes", None, 0)


# --- VQA: majority per type --------------------------------------------------------------------------

def test_the_majority_answer_is_each_types_most_frequent_training_answer():
    pairs = [(0, "dog"), (0, "cat"), (0, "Dog"), (1, "two"), (1, "three"), (1, "three"), (2, "red")]
    by_type, overall = rh.majority_answers(pairs)
    assert by_type == {0: "dog", 1: "three", 2: "red"}
    assert overall in ("dog", "three")  # 2 each; ties go alphabetically
    assert overall == "dog"


def test_majority_per_type_scores_its_answers_with_the_vqa_metric(monkeypatch):
    train = [QARecord(1, "what is it", "dog", 0), QARecord(1, "what is it", "dog", 0), QARecord(2, "what", "cat", 0),
             QARecord(1, "how many", "two", 1)]
    test = [QARecord(3, "what is this", "dog", 0), QARecord(4, "what is this", "cat", 0),
            QARecord(3, "how many", "two", 1), QARecord(4, "what colour", "red", 2)]  # type 2 never trained: "dog"
    monkeypatch.setattr(rh, "dataset_source", lambda cfg, ds: Source(qa={"train": train, "test": test}))
    m = rh.majority_per_type({}, get_reference("majority-per-type"), "shapes", None, 0)["vqa"]
    assert m.metrics["Accuracy"] == pytest.approx(2 / 4)
    assert m.labels["majority_answer"] == {"object": "dog", "number": "two"}
    assert m.labels["per_type_accuracy"] == {"object": 0.5, "number": 1.0, "color": 0.0}
    # the same per-type numbers as the Table 9 columns a head's rows have, so each type is judged against it
    assert {k: v for k, v in m.metrics.items() if k.startswith("Accuracy[")} == {
        "Accuracy[object]": 0.5, "Accuracy[number]": 1.0, "Accuracy[color]": 0.0}
    assert 0.5 <= m.metrics["WUPS@0.9"] <= 1.0  # the matches count 1, the misses their WordNet similarity


# --- grounding: mean box -----------------------------------------------------------------------------

def test_the_mean_box_is_the_mean_normalised_training_box():
    box = rh.mean_box([(0, 0, 10, 10), (50, 50, 50, 50)], [(100, 100), (100, 100)])
    assert box == pytest.approx(((0.05 + 0.75) / 2, (0.05 + 0.75) / 2, 0.3, 0.3))
    # the same box on an image twice as large is the same normalised box
    assert rh.mean_box([(0, 0, 20, 20)], [(200, 200)]) == pytest.approx(rh.mean_box([(0, 0, 10, 10)], [(100, 100)]))


def test_mean_box_draws_the_box_at_each_test_images_size(monkeypatch):
    import lgvq.downstream.grounding as grounding

    train = [RefRecord(0, 1, "left", (0, 0, 50, 100)), RefRecord(1, 2, "left one", (0, 0, 100, 200))]
    test = [RefRecord(2, 3, "the left", (0, 0, 50, 100)), RefRecord(3, 4, "the right", (50, 0, 50, 100))]
    records = {s: [] for s in ("train", "test")}
    monkeypatch.setattr(rh, "dataset_source", lambda cfg, ds: Source(refs={"train": train, "test": test}, records=records))
    monkeypatch.setattr(grounding, "image_sizes", lambda recs: {1: (100, 100), 2: (200, 200), 3: (100, 100), 4: (100, 100)})
    m = rh.mean_box_baseline({}, get_reference("mean-box"), "shapes", None, 0)["grounding"]
    assert m.labels["mean_box_cxcywh"] == pytest.approx([0.25, 0.5, 0.5, 1.0])
    assert m.metrics == {"Accuracy@0.5": 0.5, "mean_IoU": pytest.approx(0.5)}  # the left half: IoU 1 and 0


# --- captioning: most frequent caption ---------------------------------------------------------------

def test_the_most_frequent_caption_is_the_argmax_of_the_training_counts():
    caps = ["a red circle", "A red  circle", "a blue square", "a blue square", "a blue square", "a red circle."]
    assert rh.most_frequent_caption(caps) == "a blue square"
    assert rh.most_frequent_caption(["b", "a", "b", "a"]) == "a"  # a tie: the first alphabetically
    with pytest.raises(ValueError, match="no training captions"):
        rh.most_frequent_caption(["", " "])


def test_most_frequent_caption_is_output_for_every_test_image_and_scored(monkeypatch):
    train = [ImageRecord(1, Path("a.png"), ("a red circle", "a blue square")), ImageRecord(2, Path("b.png"), ("a red circle",))]
    test = [ImageRecord(3, Path("c.png"), ("a red circle",)), ImageRecord(4, Path("d.png"), ("a green star",)),
            ImageRecord(5, Path("e.png"), ("a red circle",))]
    scored = {}

    def caption_scores(preds, refs):
        scored.update(preds=preds, refs=refs)
        return {"BLEU4": 0.5, "ROUGE-L": 0.25, "METEOR": 0.1, "CIDEr-D": 1.0}

    import lgvq.metrics.captions as captions
    monkeypatch.setattr(captions, "caption_scores", caption_scores)
    monkeypatch.setattr(rh, "dataset_source", lambda cfg, ds: Source(records={"train": train, "test": test}))
    cfg = load_config(ROOT / "config" / "smoke.yaml")
    cfg["downstream"]["eval_limit"] = 2
    m = rh.most_frequent_caption_baseline(cfg, get_reference("most-frequent-caption"), "shapes", None, 0)["captioning"]
    assert scored["preds"] == {3: "a red circle", 4: "a red circle"}  # eval_limit: the heads' first 2 test images
    assert scored["refs"] == {3: ["a red circle"], 4: ["a green star"]}
    assert m.metrics["BLEU4"] == pytest.approx(50.0)  # on the paper's x100 scale, like the heads' records
    assert not any(k.startswith("named_exactly") for k in m.metrics)  # no ground-truth objects: not scored


def test_the_most_frequent_caption_is_scored_on_the_shapes_it_names(monkeypatch):
    """With ground-truth objects (the embedded data) the baseline gets the same named_exactly columns as the heads."""
    def rec(i, objects):
        return ImageRecord(i, Path(f"{i}.png"), ("a red circle",), attributes={"objects": objects})

    red_circle, blue_box = {"shape": "circle", "colour": "red"}, {"shape": "square", "colour": "blue"}
    train = [rec(1, [red_circle])]
    test = [rec(2, [red_circle]), rec(3, [blue_box]), rec(4, [{"shape": "circle", "colour": "blue"}])]
    monkeypatch.setattr(rh, "dataset_source", lambda cfg, ds: Source(records={"train": train, "test": test}))
    cfg = load_config(ROOT / "config" / "smoke.yaml")
    m = rh.most_frequent_caption_baseline(cfg, get_reference("most-frequent-caption"), "shapes", None, 0)["captioning"]
    assert m.metrics["named_exactly[shape]"] == pytest.approx(2 / 3)   # images 2 and 4 show a circle
    assert m.metrics["named_exactly[colour]"] == pytest.approx(1 / 3)  # only image 2 is red
    assert "names exactly the shapes" in m.notes["named_exactly[shape]"]


# --- VQA: the blind head -----------------------------------------------------------------------------

def test_the_blind_head_runs_on_expensive_seeds_each_its_own_job():
    cfg = smoke()
    cfg["expensive_seeds"] = [0, 3]
    files = [str(m.path) for m in plan.table_metric_inputs(cfg, "vqa") if "/blind-head/" in str(m.path)]
    assert [f.split("/blind-head/")[1] for f in files] == ["data/seed0/metrics.json", "data/seed3/metrics.json"]
    h0, h3 = (jobs.job_hash(jobs.reference(cfg, "blind-head", "shapes", None, s)) for s in (0, 3))
    assert h0 != h3  # the head's seed is in its job hash ...
    cfg["downstream"]["steps"] += 1
    assert jobs.job_hash(jobs.reference(cfg, "blind-head", "shapes", None, 0)) != h0  # ... and so is its budget


def test_the_blind_head_cannot_see_the_image():
    from lgvq.pipeline.reference_blind import blind_setup

    cfg = smoke()
    qa = {"train": [QARecord(1, "what shape is it", "circle", 0), QARecord(2, "what shape is it", "square", 0)],
          "test": [QARecord(1, "what shape is it", "circle", 0), QARecord(2, "what shape is it", "square", 0),
                   QARecord(2, "what colour is it", "red", 2)]}
    setup = blind_setup(cfg, "vqa", "shapes", Source(qa=qa), "cpu", 0)
    codes_1, *_ = setup.make_batch([0], 0)
    codes_2, *_ = setup.make_batch([1], 0)
    assert torch.equal(codes_1, codes_2)  # two images, one code grid
    setup.model.eval()
    predictions = [row["prediction"] for row in setup.evaluate(setup.model).predictions]
    assert predictions[0] == predictions[1]  # the same question on two images: the same answer


def test_the_understanding_baselines_land_as_rows_of_their_tables_in_the_models_columns():
    from lgvq.metrics.record import MetricRecord
    from lgvq.tables.build import build_table

    def rec(kind, tok, variant, seed, metrics):
        return MetricRecord(kind, "shapes", tok, variant, seed, metrics, {})

    records = [rec("vqa", "vqgan", "base", 0, {"Accuracy": 0.4, "WUPS@0.9": 0.8}),
               rec("vqa", "*", "baseline:majority-per-type", 0, {"Accuracy": 0.25, "WUPS@0.9": 0.5}),
               rec("vqa", "*", "baseline:blind-head", 0, {"Accuracy": 0.3, "WUPS@0.9": 0.6}),
               rec("vqa", "*", "baseline:blind-head", 1, {"Accuracy": 0.2, "WUPS@0.9": 0.6})]
    df = build_table("vqa", records, dataset_columns={"shapes": None})
    refs = df[df["row_kind"] == "baseline"]
    acc = refs[refs["metric"] == "Accuracy"].set_index("row")["ours_mean"]
    assert acc.to_dict() == pytest.approx({"baseline: majority-per-type": 25.0, "baseline: blind-head": 25.0})
    assert refs["delta_vs_base"].isna().all()  # a reference row has no Δ


def test_the_text_only_grounding_head_cannot_see_the_image(monkeypatch):
    import lgvq.downstream.grounding as grounding
    from lgvq.pipeline.reference_blind import blind_setup

    cfg = smoke()
    cfg["datasets"]["shapes"]["resize_mode"] = "resize"
    refs = {"train": [RefRecord(0, 1, "the red circle", (0, 0, 8, 8)), RefRecord(1, 2, "the red circle", (8, 8, 8, 8))],
            "test": [RefRecord(2, 1, "the red circle", (0, 0, 8, 8)), RefRecord(3, 2, "the red circle", (8, 8, 8, 8))]}
    monkeypatch.setattr(grounding, "image_sizes", lambda recs: {1: (16, 16), 2: (16, 16)})
    source = Source(refs=refs, records={"train": [], "test": []})
    setup = blind_setup(cfg, "grounding", "shapes", source, "cpu", 0)
    codes_1, *_ = setup.make_batch([0], 0)
    codes_2, *_ = setup.make_batch([1], 0)
    assert torch.equal(codes_1, codes_2)
    setup.model.eval()
    boxes = [row["pred_xywh"] for row in setup.evaluate(setup.model).predictions]
    assert boxes[0] == boxes[1]  # one expression on two images: one box


@pytest.mark.parametrize("cpu_bf16, precision", [("on", "bf16-autocast (cpu)"), ("off", "fp32")])
def test_the_blind_head_trains_with_the_heads_execution_and_records_it(monkeypatch, tmp_path, cpu_bf16, precision):
    """The control differs from the heads it controls for in its input only: the same `downstream` settings,
    CPU bf16 autocast included, and its manifest says how its steps ran."""
    import lgvq.pipeline.reference_blind as rb

    cfg = smoke()
    cfg["results_dir"] = str(tmp_path)
    cfg["downstream"].update(steps=2, cpu_bf16=cpu_bf16, ckpt_every=1)
    qa = {"train": [QARecord(1, "what shape is it", "circle", 0), QARecord(2, "what shape is it", "square", 0)],
          "test": [QARecord(1, "what shape is it", "circle", 0)]}
    monkeypatch.setattr(rb, "dataset_source", lambda cfg, dataset: Source(qa=qa))
    measured = rb.blind_head(cfg, get_reference("blind-head"), "shapes", None, 0)
    assert measured["vqa"].execution["precision"] == precision
    assert "conv layers" not in measured["vqa"].labels["head"]


def test_the_blind_heads_label_names_the_front_end_convolutions_it_trained_with(monkeypatch, tmp_path):
    import lgvq.pipeline.reference_blind as rb

    cfg = smoke()
    cfg["results_dir"] = str(tmp_path)
    cfg["downstream"].update(steps=1, frontend_conv=2, ckpt_every=1)
    qa = {"train": [QARecord(1, "what shape is it", "circle", 0)], "test": [QARecord(1, "what shape is it", "circle", 0)]}
    monkeypatch.setattr(rb, "dataset_source", lambda cfg, dataset: Source(qa=qa))
    measured = rb.blind_head(cfg, get_reference("blind-head"), "shapes", None, 0)
    assert "2 3x3 conv layers over the code grid" in measured["vqa"].labels["head"]
