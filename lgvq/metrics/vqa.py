"""VQA metrics: COCO-QA accuracy, per-question-type accuracy and WUPS; VQA-v2 soft accuracy.

COCO-QA (Ren et al. 2015; the paper's Table 9) has single-word answers. Accuracy is exact match
after lower-casing and stripping. WUPS (Malinowski & Fritz 2014, "A multi-world approach to
question answering...") softens it with WordNet:
- mu(a, t) = 1 if the words are equal; otherwise the largest Wu-Palmer similarity between any
  NOUN synset of a and any noun synset of t (0 when either word has none) — nouns only, as the
  authors' evaluation script does — multiplied by 0.1 when it is below the threshold;
- an answer may be a comma-separated set of words (DAQUAR style); for answer set A and truth T,
  WUPS = min(prod_{a in A} max_{t in T} mu(a, t), prod_{t in T} max_{a in A} mu(a, t)), which for
  single words is just mu(a, t);
- the reported number is the mean over questions; WUPS@0.9 and WUPS@0.0 are the usual pair.
WordNet 3.0 is read by nltk from `<repo>/.nltk_data` (override with NLTK_DATA), installed offline
by `bash scripts/install_wordnet.sh`.

VQA-v2 accuracy (Antol et al. 2015 / the official evaluation): with 10 human answers,
acc = mean over the 10 leave-one-out subsets of 9 of min(#humans in the subset who gave the
predicted answer / 3, 1). Answers are normalised on both sides (see `normalize_vqa_answer`).
"""

from __future__ import annotations

import math
import os
import re
from collections import defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Hashable, Sequence

DEFAULT_NLTK_DATA = Path(__file__).resolve().parents[2] / ".nltk_data"
COCOQA_QUESTION_TYPES = {0: "object", 1: "number", 2: "color", 3: "location"}


class WordNetMissingError(RuntimeError):
    """WordNet is not installed where nltk looks."""


def _normalise(answer: str) -> str:
    return answer.strip().lower()


def _check_lengths(predictions: Sequence, answers: Sequence, what: str) -> None:
    if len(predictions) != len(answers):
        raise ValueError(f"{what}: {len(predictions)} predictions for {len(answers)} answers")
    if not answers:
        raise ValueError(f"{what}: no questions")


def accuracy(predictions: Sequence[str], answers: Sequence[str]) -> float:
    """COCO-QA accuracy: the fraction of exact (case-insensitive) matches."""
    _check_lengths(predictions, answers, "accuracy")
    return sum(_normalise(p) == _normalise(a) for p, a in zip(predictions, answers)) / len(answers)


def per_type_accuracy(predictions: Sequence[str], answers: Sequence[str],
                      types: Sequence[Hashable]) -> dict[Hashable, float]:
    """Accuracy per question type (COCO-QA: 0 object, 1 number, 2 color, 3 location)."""
    _check_lengths(predictions, answers, "per_type_accuracy")
    if len(types) != len(answers):
        raise ValueError(f"per_type_accuracy: {len(types)} question types for {len(answers)} answers")
    hit: dict = defaultdict(int)
    n: dict = defaultdict(int)
    for p, a, t in zip(predictions, answers, types):
        n[t] += 1
        hit[t] += _normalise(p) == _normalise(a)
    return {t: hit[t] / n[t] for t in sorted(n)}


def type_metric(qtype: str) -> str:
    """The metric name of one question type's accuracy: `Accuracy[object]`."""
    return f"Accuracy[{qtype}]"


def type_accuracy_metrics(predictions: Sequence[str], answers: Sequence[str],
                          types: Sequence[str]) -> dict[str, float]:
    """`Accuracy[<type>]` per question type, named as given (COCO-QA's: object, number, color, location), in
    COCO-QA's order (other names after, sorted). A head can clear a baseline on the overall accuracy while one
    type stays at chance (on the embedded data: what the object is, its shape); these columns show it."""
    order = {name: i for i, name in enumerate(COCOQA_QUESTION_TYPES.values())}
    by_type = per_type_accuracy(predictions, answers, types)
    return {type_metric(t): by_type[t] for t in sorted(by_type, key=lambda t: (order.get(t, len(order)), str(t)))}


# --- WUPS ---------------------------------------------------------------------------------------

def nltk_data_dir() -> Path:
    return Path(os.environ.get("NLTK_DATA", DEFAULT_NLTK_DATA))


@lru_cache(maxsize=1)
def _wordnet():
    import nltk

    root = nltk_data_dir()
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    from nltk.corpus import wordnet as wn

    try:
        wn.ensure_loaded()
    except LookupError as e:
        raise WordNetMissingError(
            f"WordNet (needed for WUPS) not found under {root}/corpora/wordnet: run `bash scripts/install_wordnet.sh`"
        ) from e
    return wn


@lru_cache(maxsize=None)
def wup(a: str, b: str) -> float:
    """Largest Wu-Palmer similarity between the noun senses of two words; 1.0 for equal words."""
    a, b = _normalise(a), _normalise(b)
    if a == b:
        return 1.0
    wn = _wordnet()
    # WordNet spells compounds with underscores ("traffic_light").
    senses_a = wn.synsets(a.replace(" ", "_"), pos=wn.NOUN)
    senses_b = wn.synsets(b.replace(" ", "_"), pos=wn.NOUN)
    return max((sa.wup_similarity(sb) or 0.0 for sa in senses_a for sb in senses_b), default=0.0)


def wups_measure(a: str, b: str, threshold: float) -> float:
    """mu(a, b): Wu-Palmer similarity, scaled by 0.1 below `threshold`."""
    s = wup(a, b)
    return s if s >= threshold else 0.1 * s


def _words(answer: str) -> list[str]:
    return [w for w in (_normalise(x) for x in answer.split(",")) if w]


def wups_score(prediction: str, answer: str, threshold: float) -> float:
    """WUPS of one question (answers may be comma-separated word sets)."""
    A, T = _words(prediction), _words(answer)
    if not A and not T:
        return 1.0
    if not A or not T:
        return 0.0
    left = math.prod(max(wups_measure(a, t, threshold) for t in T) for a in A)
    right = math.prod(max(wups_measure(a, t, threshold) for a in A) for t in T)
    return min(left, right)


def wups(predictions: Sequence[str], answers: Sequence[str], threshold: float) -> float:
    """Mean WUPS@threshold over questions (report x100 like accuracy)."""
    _check_lengths(predictions, answers, "wups")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"wups: threshold must be in [0, 1], got {threshold}")
    return sum(wups_score(p, a, threshold) for p, a in zip(predictions, answers)) / len(answers)


# --- VQA-v2 -------------------------------------------------------------------------------------

_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                 "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}
_PUNCTUATION = re.compile(r"""[;/\[\]"{}()=+\\_\-><@`,?!]""")


def normalize_vqa_answer(answer: str) -> str:
    """The official evaluation's normalisation in its essentials: lower case; commas inside
    numbers dropped ("1,000" -> "1000"); punctuation -> space; periods dropped unless they are
    decimal points; number words zero..ten -> digits; articles dropped; whitespace collapsed.
    (Not reproduced: its table of apostrophe-less contractions, e.g. "dont" -> "don't".)"""
    text = answer.replace("\n", " ").replace("\t", " ").strip().lower()
    text = re.sub(r"(?<=\d),(?=\d)", "", text)
    text = _PUNCTUATION.sub(" ", text)
    text = re.sub(r"(?<!\d)\.|\.(?!\d)", "", text)
    words = [_NUMBER_WORDS.get(w, w) for w in text.split() if w not in _ARTICLES]
    return " ".join(words)


def vqa_v2_accuracy(prediction: str, human_answers: Sequence[str]) -> float:
    """Soft accuracy of one prediction against its (normally 10) human answers."""
    if len(human_answers) < 2:
        raise ValueError(f"vqa_v2_accuracy: needs the human answers (normally 10), got {len(human_answers)}")
    p = normalize_vqa_answer(prediction)
    same = [normalize_vqa_answer(h) == p for h in human_answers]
    total = sum(same)
    # Leaving out human i removes their vote when they agreed with the prediction.
    return sum(min((total - s) / 3.0, 1.0) for s in same) / len(same)


def vqa_v2_mean_accuracy(predictions: Sequence[str], human_answers: Sequence[Sequence[str]]) -> float:
    """Mean soft accuracy over questions."""
    _check_lengths(predictions, human_answers, "vqa_v2_mean_accuracy")
    return sum(vqa_v2_accuracy(p, h) for p, h in zip(predictions, human_answers)) / len(predictions)
