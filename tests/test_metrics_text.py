"""Caption, VQA and grounding metrics against their references."""

from __future__ import annotations

import pytest

from lgvq.metrics.captions import caption_scores
from lgvq.metrics.grounding import cxcywh_norm_to_xywh, grounding_accuracy, iou_xywh, xywh_to_cxcywh_norm
from lgvq.metrics.vqa import accuracy, per_type_accuracy, type_accuracy_metrics, vqa_v2_accuracy, wup, wups

REFS = {1: ["a red circle next to a blue square", "a blue box beside a red disc"],
        2: ["two green triangles on a dark background", "a pair of green wedges"]}
PREDS = {1: "a red circle next to a blue box", 2: "two green triangles"}


def test_caption_scores_equal_pycocoevalcaps_scorers():
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    ours = caption_scores(PREDS, REFS)
    tok = PTBTokenizer()
    gts = tok.tokenize({i: [{"caption": c} for c in r] for i, r in REFS.items()})
    res = tok.tokenize({i: [{"caption": c}] for i, c in PREDS.items()})
    assert ours["BLEU4"] == pytest.approx(Bleu(4).compute_score(gts, res, verbose=0)[0][3])
    assert ours["ROUGE-L"] == pytest.approx(Rouge().compute_score(gts, res)[0])
    assert ours["CIDEr-D"] == pytest.approx(Cider().compute_score(gts, res)[0])
    assert ours["METEOR"] == pytest.approx(Meteor().compute_score(gts, res)[0])


def test_a_perfect_caption_has_bleu_one():
    s = caption_scores({1: "a red circle next to a blue square"}, {1: ["a red circle next to a blue square"]})
    assert s["BLEU4"] == pytest.approx(1.0, abs=1e-6)


def test_wups_on_hand_checked_pairs():
    assert wup("dog", "dog") == 1.0
    assert wup("dog", "cat") == pytest.approx(0.857, abs=1e-3)   # NLTK's documented Wu-Palmer value
    assert wups(["cat"], ["dog"], 0.9) == pytest.approx(0.0857, abs=1e-3)  # below 0.9: scaled by 0.1
    assert wups(["cat"], ["dog"], 0.0) == pytest.approx(0.857, abs=1e-3)


def test_accuracy_and_per_type():
    assert accuracy(["Red", "two"], ["red", "three"]) == 0.5
    assert per_type_accuracy(["red", "two", "left"], ["red", "three", "left"], [2, 1, 3]) == {1: 0.0, 2: 1.0, 3: 1.0}


def test_per_type_accuracy_columns_are_named_by_type_in_coco_qas_order():
    preds = ["left", "two", "red", "square", "circle"]
    gold = ["left", "three", "red", "circle", "circle"]
    types = ["location", "number", "color", "object", "object"]
    got = type_accuracy_metrics(preds, gold, types)
    assert list(got) == ["Accuracy[object]", "Accuracy[number]", "Accuracy[color]", "Accuracy[location]"]
    assert got == {"Accuracy[object]": 0.5, "Accuracy[number]": 0.0, "Accuracy[color]": 1.0, "Accuracy[location]": 1.0}


def test_a_caption_names_exactly_the_shapes_and_colours_of_its_image_or_not():
    from lgvq.metrics.named import named_exactly

    two = [{"shape": "cross", "colour": "red"}, {"shape": "circle", "colour": "red"}]
    got = named_exactly(["a red plus sign next to a red disc",     # synonyms: both shapes, the one colour
                         "an image showing a red plus shape",        # a shape missing
                         "a red cross and a blue circle"],           # a colour too many
                        [two, two, two])
    assert got == {"named_exactly[shape]": pytest.approx(2 / 3), "named_exactly[colour]": pytest.approx(2 / 3)}
    with pytest.raises(ValueError, match="2 captions for 1 images"):
        named_exactly(["a", "b"], [two])


def test_vqa_v2_soft_accuracy():
    assert vqa_v2_accuracy("yes", ["yes"] * 10) == 1.0
    assert vqa_v2_accuracy("yes", ["yes"] * 2 + ["no"] * 8) == pytest.approx((8 * 2 / 3 + 2 * 1 / 3) / 10)


@pytest.mark.parametrize("a, b, expected", [
    ((0, 0, 10, 10), (20, 20, 5, 5), 0.0),          # no overlap
    ((0, 0, 10, 10), (10, 0, 10, 10), 0.0),         # touching edges
    ((0, 0, 10, 10), (2, 2, 5, 5), 25 / 100),       # containment
    ((3, 4, 5, 6), (3, 4, 5, 6), 1.0),              # identical
    ((0, 0, 10, 10), (5, 0, 10, 10), 50 / 150),     # half overlap
])
def test_iou_edge_cases(a, b, expected):
    assert iou_xywh(a, b) == pytest.approx(expected)


def test_grounding_accuracy_is_strictly_above_half_and_boxes_round_trip():
    assert grounding_accuracy([(0, 0, 10, 10), (0, 0, 10, 10)], [(0, 0, 10, 10), (5, 0, 10, 10)]) == 0.5
    box = (3.0, 4.0, 10.0, 6.0)
    assert cxcywh_norm_to_xywh(xywh_to_cxcywh_norm(box, 32, 16), 32, 16) == pytest.approx(box)
