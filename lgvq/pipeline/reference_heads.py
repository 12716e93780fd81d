"""The understanding tasks' trivial baselines (lgvq.pipeline.references): what a head that never looks at the
image scores on VQA, grounding and captioning.

Each one answers from the training split's statistics alone and is scored by the heads' own metric code
(lgvq.metrics.vqa, lgvq.metrics.grounding, lgvq.metrics.captions) on the same test split, so its row reads
against the models' rows in the same columns:
- majority-per-type: each question type's most frequent training answer;
- mean-box: the mean normalised (cx, cy, w, h) training box, drawn on each test image at its size;
- most-frequent-caption: the most frequent training caption, output for every test image.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Hashable, Iterable, Sequence

import numpy as np

from lgvq.pipeline.common import dataset_source
from lgvq.pipeline.reference_jobs import Measured
from lgvq.pipeline.references import Reference
from lgvq.settings import downstream_settings


def _most_frequent(counts: Counter) -> str:
    """The argmax of `counts`; ties go to the alphabetically first (a deterministic row)."""
    return min(counts, key=lambda a: (-counts[a], a))


# --- VQA ----------------------------------------------------------------------------------------------

def majority_answers(pairs: Iterable[tuple[Hashable, str]]) -> tuple[dict[Hashable, str], str]:
    """(question type, answer) training pairs -> (type -> its most frequent answer, the overall one for a type
    never seen in training). Answers are counted in the head's answer-vocabulary form (lgvq.downstream.vocab)."""
    from lgvq.downstream.vocab import words

    per_type: dict[Hashable, Counter] = {}
    overall: Counter = Counter()
    for qtype, answer in pairs:
        a = " ".join(words(answer))
        per_type.setdefault(qtype, Counter())[a] += 1
        overall[a] += 1
    if not overall:
        raise ValueError("majority answers: no training questions")
    return {t: _most_frequent(c) for t, c in per_type.items()}, _most_frequent(overall)


def majority_per_type(cfg: dict[str, Any], ref: Reference, dataset: str, tokenizer: None, seed: int) -> dict[str, Measured]:
    from lgvq.io import ArtifactError
    from lgvq.metrics.vqa import COCOQA_QUESTION_TYPES, accuracy, per_type_accuracy, type_accuracy_metrics, wups

    source = dataset_source(cfg, dataset)
    train, test = source.qa("train"), source.qa("test")
    if not train or not test:
        raise ArtifactError(f"dataset '{dataset}' has {len(train)} train / {len(test)} test questions; the VQA "
                            "baseline needs both")
    by_type, overall = majority_answers((q.qtype, q.answer) for q in train)
    preds = [by_type.get(q.qtype, overall) for q in test]
    gold = [q.answer for q in test]
    unseen = sum(q.qtype not in by_type for q in test)
    how = (f"each question type's most frequent answer over {len(train)} training questions ({len(by_type)} types; "
           f"{unseen} test questions of an unseen type get the overall one, '{overall}'); {len(test)} test questions")
    metrics = {"Accuracy": accuracy(preds, gold), "WUPS@0.9": wups(preds, gold, 0.9), "WUPS@0.0": wups(preds, gold, 0.0)}
    types = [COCOQA_QUESTION_TYPES.get(q.qtype, str(q.qtype)) for q in test]
    per_type = {str(k): v for k, v in per_type_accuracy(preds, gold, types).items()}
    metrics |= type_accuracy_metrics(preds, gold, types)
    answers = {COCOQA_QUESTION_TYPES.get(t, str(t)): a for t, a in by_type.items()}
    return {"vqa": Measured(metrics, {m: how for m in metrics},
                            labels={"per_type_accuracy": per_type, "majority_answer": answers})}


# --- grounding ----------------------------------------------------------------------------------------

def mean_box(boxes_xywh: Sequence[Sequence[float]], sizes: Sequence[tuple[float, float]]) -> tuple[float, ...]:
    """The mean training box as normalised (cx, cy, w, h) — the head's regression target — over boxes in
    pixels (x, y, w, h) with their images' (width, height)."""
    from lgvq.metrics.grounding import xywh_to_cxcywh_norm

    if not boxes_xywh:
        raise ValueError("mean box: no training boxes")
    norm = np.asarray([xywh_to_cxcywh_norm(b, w, h) for b, (w, h) in zip(boxes_xywh, sizes, strict=True)])
    return tuple(float(v) for v in norm.mean(0))


def mean_box_baseline(cfg: dict[str, Any], ref: Reference, dataset: str, tokenizer: None, seed: int) -> dict[str, Measured]:
    from lgvq.downstream.grounding import box_frames
    from lgvq.io import ArtifactError
    from lgvq.metrics.grounding import cxcywh_norm_to_xywh, grounding_accuracy, iou_xywh_many

    source = dataset_source(cfg, dataset)
    train, test = source.refs("train"), source.refs("test")
    if not train or not test:
        raise ArtifactError(f"dataset '{dataset}' has {len(train)} train / {len(test)} test referring expressions; "
                            "the grounding baseline needs both")
    sizes = box_frames(source, train, test)
    box = mean_box([r.bbox_xywh for r in train], [sizes[r.image_id] for r in train])
    pred = [cxcywh_norm_to_xywh(box, *sizes[r.image_id]) for r in test]
    gt = [r.bbox_xywh for r in test]
    how = (f"the mean normalised (cx, cy, w, h) = ({', '.join(f'{v:.3f}' for v in box)}) of {len(train)} training "
           f"boxes, on each of {len(test)} test expressions' image")
    metrics = {"Accuracy@0.5": grounding_accuracy(pred, gt, 0.5), "mean_IoU": float(np.mean(iou_xywh_many(pred, gt)))}
    return {"grounding": Measured(metrics, {m: how for m in metrics}, labels={"mean_box_cxcywh": list(box)})}


# --- captioning ---------------------------------------------------------------------------------------

def most_frequent_caption(captions: Iterable[str]) -> str:
    """The most frequent training caption (compared lower-cased with whitespace collapsed)."""
    counts = Counter(" ".join(c.lower().split()) for c in captions)
    counts.pop("", None)
    if not counts:
        raise ValueError("most frequent caption: no training captions")
    return _most_frequent(counts)


def most_frequent_caption_baseline(cfg: dict[str, Any], ref: Reference, dataset: str, tokenizer: None,
                                   seed: int) -> dict[str, Measured]:
    from lgvq.metrics.named import named_attributes, named_notes
    from lgvq.metrics.captions import caption_scores, to_paper_scale

    source = dataset_source(cfg, dataset)
    train = source.records("train")
    test = list(source.records("test"))
    limit = downstream_settings(cfg).eval_limit
    if limit:
        test = test[:limit]  # the heads' test images (downstream.eval_limit)
    caption = most_frequent_caption(c for r in train for c in r.captions)
    refs = {r.image_id: list(r.captions) for r in test}
    scores = to_paper_scale(caption_scores({i: caption for i in refs}, refs))
    how = (f"pycocoevalcap x100, the most frequent of {sum(len(r.captions) for r in train)} training captions "
           f"('{caption}') for each of {len(test)} test images, all references per image")
    notes = {m: how for m in scores}
    named = named_attributes(test, {i: caption for i in refs})
    return {"captioning": Measured(scores | named, notes | named_notes(named, f"'{caption}'", len(test)),
                                   labels={"caption": caption})}
