"""VQA metrics: COCO-QA accuracy and WUPS (Malinowski & Fritz, 2014), VQA-v2 soft accuracy.

WUPS@t for single-word answers: per question, WUP(a, g) = max Wu-Palmer similarity over the
synsets of the two words, scaled by
0.1 when below the threshold t; identical words score 1. WordNet comes from Debian's packages
via scripts/install_wordnet.sh (offline).
"""

from __future__ import annotations

import os
from collections import defaultdict
from functools import lru_cache
from itertools import combinations
from pathlib import Path

DEFAULT_NLTK_DATA = Path(__file__).resolve().parents[2] / ".nltk_data"


class WordNetMissingError(RuntimeError):
    pass


def _normalise(a: str) -> str:
    return a.strip().lower()


def accuracy(predictions: list[str], answers: list[str]) -> float:
    if len(predictions) != len(answers) or not answers:
        raise ValueError("need as many predictions as answers (and at least one)")
    return sum(_normalise(p) == _normalise(a) for p, a in zip(predictions, answers)) / len(answers)


def per_type_accuracy(predictions: list[str], answers: list[str], types: list[int]) -> dict[int, float]:
    hit, n = defaultdict(int), defaultdict(int)
    for p, a, t in zip(predictions, answers, types):
        n[t] += 1
        hit[t] += _normalise(p) == _normalise(a)
    return {t: hit[t] / n[t] for t in sorted(n)}


@lru_cache(maxsize=1)
def _wordnet():
    import nltk

    root = Path(os.environ.get("NLTK_DATA", DEFAULT_NLTK_DATA))
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    from nltk.corpus import wordnet as wn

    try:
        wn.ensure_loaded()
    except LookupError as e:
        raise WordNetMissingError(f"WordNet not found under {root}: run `bash scripts/install_wordnet.sh`") from e
    return wn


@lru_cache(maxsize=None)
def wup(a: str, b: str) -> float:
    a, b = _normalise(a), _normalise(b)
    if a == b:
        return 1.0
    wn = _wordnet()
    best = 0.0
    for sa in wn.synsets(a):
        for sb in wn.synsets(b):
            best = max(best, sa.wup_similarity(sb) or 0.0)
    return best


def wups(predictions: list[str], answers: list[str], threshold: float) -> float:
    scores = []
    for p, a in zip(predictions, answers):
        s = wup(p, a)
        scores.append(s if s >= threshold else 0.1 * s)
    return sum(scores) / len(scores)


def vqa_v2_accuracy(prediction: str, human_answers: list[str]) -> float:
    """Official VQA-v2 accuracy: min(#matching humans / 3, 1) averaged over the 10 leave-one-out subsets."""
    p = _normalise(prediction)
    answers = [_normalise(h) for h in human_answers]
    subsets = list(combinations(range(len(answers)), len(answers) - 1))
    return sum(min(sum(answers[i] == p for i in s) / 3.0, 1.0) for s in subsets) / len(subsets)
