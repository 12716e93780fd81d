"""Word and answer vocabularies, built from the training split only and saved beside the head.

Words are lower-cased alphanumeric runs (punctuation dropped), the same normalisation the
caption metrics' PTB tokenizer applies to references, so a decoded caption is scored on the
words it could have produced. Without a local GPT-2 copy (whose BPE tokenizer would need its
files) the decoders are trained from scratch over this vocabulary.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Sequence

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class WordVocab:
    PAD, BOS, EOS, UNK = 0, 1, 2, 3
    SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")

    def __init__(self, itos: Sequence[str]) -> None:
        if tuple(itos[: len(self.SPECIALS)]) != self.SPECIALS:
            raise ValueError(f"a word vocabulary must start with {self.SPECIALS}")
        self.itos = list(itos)
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("duplicate words in the vocabulary")

    @classmethod
    def build(cls, texts: Iterable[str], *, min_count: int = 1, max_size: int | None = None) -> "WordVocab":
        counts = Counter(w for t in texts for w in words(t))
        ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        if max_size is not None:
            ranked = ranked[: max(0, max_size - len(cls.SPECIALS))]
        return cls([*cls.SPECIALS, *ranked])

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str, max_words: int, *, bos: bool = False, eos: bool = False) -> list[int]:
        """Word ids of `text`, truncated to `max_words` words (BOS/EOS not counted)."""
        ids = [self.stoi.get(w, self.UNK) for w in words(text)[:max_words]]
        return ([self.BOS] if bos else []) + ids + ([self.EOS] if eos else [])

    def decode(self, ids: Iterable[int]) -> str:
        """Words up to the first EOS; PAD and BOS are skipped."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.EOS:
                break
            if i not in (self.PAD, self.BOS):
                out.append(self.itos[i])
        return " ".join(out)

    def to_dict(self) -> dict:
        return {"itos": self.itos}

    @classmethod
    def from_dict(cls, d: dict) -> "WordVocab":
        return cls(d["itos"])


class AnswerVocab:
    """The classifier's classes: the `max_size` most frequent training answers (COCO-QA answers are
    single words). A test answer outside it cannot be predicted and counts as wrong."""

    def __init__(self, answers: Sequence[str]) -> None:
        self.answers = list(answers)
        self.index = {a: i for i, a in enumerate(self.answers)}

    @classmethod
    def build(cls, answers: Iterable[str], max_size: int) -> "AnswerVocab":
        counts = Counter(" ".join(words(a)) for a in answers)
        return cls(sorted(counts, key=lambda a: (-counts[a], a))[:max_size])

    def __len__(self) -> int:
        return len(self.answers)

    def lookup(self, answer: str) -> int:
        """Class id of `answer`, or -1 when it is not in the vocabulary."""
        return self.index.get(" ".join(words(answer)), -1)

    def to_dict(self) -> dict:
        return {"answers": self.answers}

    @classmethod
    def from_dict(cls, d: dict) -> "AnswerVocab":
        return cls(d["answers"])


def pad_batch(seqs: Sequence[Sequence[int]], pad: int = WordVocab.PAD):
    """Right-padded LongTensor (B, T_max) and the lengths (B,)."""
    import torch

    T = max(1, max(len(s) for s in seqs))
    out = torch.full((len(seqs), T), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
    return out, torch.as_tensor([len(s) for s in seqs], dtype=torch.long)
