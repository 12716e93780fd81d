"""Caption metrics through pycocoevalcap's own scorers: BLEU-4, METEOR, ROUGE-L, CIDEr-D.

Protocol (what COCOEvalCap does, minus SPICE): candidates and references both go through
pycocoevalcap's PTB tokenizer (Stanford PTBTokenizer: lower-cased, punctuation dropped), then
`Bleu(4)`, `Meteor()`, `Rouge()` and `Cider()` score the tokenised text, one candidate per id.
We do not call COCOEvalCap itself: it always runs SPICE, which downloads Stanford CoreNLP.
pycocoevalcap's `Cider` is CIDEr-D (Gaussian length penalty, sigma 6; clipped n-gram counts;
x10), with document frequencies taken from the references being scored — tiny sets give odd
values. BLEU-4 is the corpus-level score (clipped counts and brevity penalty over all ids).

Scale. `caption_scores` returns pycocoevalcap's raw values: BLEU/METEOR/ROUGE-L in [0, 1],
CIDEr-D as computed (with its x10, typically 0-3). The paper's Table 11 prints them x100:
ROUGE-L 33.40, METEOR 24.47 and CIDEr-D 93.62 for VQ-GAN on CUB-200 are the usual magnitudes of
0.334, 0.245 and 0.936. Its BLEU4 (1.29 - 1.69) does not fit that convention: x100 would mean
BLEU-4 = 0.013, implausibly low beside those ROUGE-L and CIDEr-D values (published CUB captioning
BLEU-4 is usually 0.2-0.3), and no other common scale (raw, x10) fits either. We therefore use
one convention for all four — `to_paper_scale` multiplies by 100 — and treat the paper's BLEU4
column as not comparable with ours.

METEOR and the tokenizer need Java 17. METEOR's JVM costs ~6 s to start, so one `Meteor` is created
lazily per process and reused (`close_meteor` stops it; it is also stopped at exit).
"""

from __future__ import annotations

import atexit
import shutil
import threading
from typing import Hashable, Mapping, Sequence

CAPTION_METRICS = ("BLEU4", "METEOR", "ROUGE-L", "CIDEr-D")
PAPER_SCALE = 100.0  # Table 11 prints every caption metric x100

_METEOR = None
_METEOR_LOCK = threading.Lock()


class JavaMissingError(RuntimeError):
    """Java is not on PATH: METEOR and the PTB tokenizer cannot run."""


def _require_java() -> None:
    if shutil.which("java") is None:
        raise JavaMissingError("Java 17 needed for METEOR/PTB tokenizer: apt-get install default-jre-headless")


def _meteor():
    """The process-wide METEOR scorer (one JVM), started on first use."""
    global _METEOR
    with _METEOR_LOCK:
        if _METEOR is None:
            from pycocoevalcap.meteor.meteor import Meteor

            _METEOR = Meteor()
            atexit.register(close_meteor)
        return _METEOR


def close_meteor() -> None:
    """Stop the shared METEOR JVM (a later call to `caption_scores` starts a new one)."""
    global _METEOR
    with _METEOR_LOCK:
        scorer, _METEOR = _METEOR, None
    if scorer is None:
        return
    # The same steps as pycocoevalcap's Meteor.__del__, which stays safe to run afterwards
    # (closing a closed pipe and killing a reaped process are no-ops).
    proc = scorer.meteor_p
    try:
        proc.stdin.close()
    except OSError:
        pass
    proc.kill()
    proc.wait()


def _meteor_score(gts: dict, res: dict) -> float:
    scorer = _meteor()
    try:
        return float(scorer.compute_score(gts, res)[0])
    except (ValueError, OSError) as e:
        # The JVM died (out of memory, killed): its stdout ended and float('') failed. The
        # scorer still holds its lock; release it, or its __del__ would block forever.
        if scorer.lock.locked():
            scorer.lock.release()
        close_meteor()
        err = scorer.meteor_p.stderr.read().decode(errors="replace")[-500:] if scorer.meteor_p.stderr else ""
        raise RuntimeError(f"METEOR's Java process failed: {e!r} {err}") from e


def _validate(predictions: Mapping[Hashable, str], references: Mapping[Hashable, Sequence[str]]) -> None:
    if not predictions:
        raise ValueError("caption_scores: no captions to score")
    if set(predictions) != set(references):
        missing = sorted(map(str, set(references) - set(predictions)))[:5]
        extra = sorted(map(str, set(predictions) - set(references)))[:5]
        raise ValueError(f"caption_scores: predictions and references must have the same ids "
                         f"(no prediction for {missing}, no references for {extra})")
    for i, p in predictions.items():
        if not isinstance(p, str):
            raise TypeError(f"caption_scores: prediction for id {i!r} is {type(p).__name__}, not str")
    for i, refs in references.items():
        if isinstance(refs, str) or not refs or not all(isinstance(r, str) and r.strip() for r in refs):
            raise ValueError(f"caption_scores: references for id {i!r} must be a non-empty list of non-empty strings")


def _tokenize(captions: Mapping[Hashable, Sequence[str]]) -> dict:
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    out = PTBTokenizer().tokenize({i: [{"caption": c} for c in caps] for i, caps in captions.items()})
    for i, caps in captions.items():  # the tokenizer pairs output lines with ids by position
        if len(out.get(i, ())) != len(caps):
            raise RuntimeError(f"PTB tokenizer returned {len(out.get(i, ()))} captions for id {i!r}, expected {len(caps)}")
    return out


def caption_scores(predictions: Mapping[Hashable, str], references: Mapping[Hashable, Sequence[str]]) -> dict[str, float]:
    """BLEU4, METEOR, ROUGE-L, CIDEr-D (raw pycocoevalcap values, see the module docstring).

    predictions: id -> one generated caption (may be empty); references: id -> its reference
    captions. Both must have the same ids.
    """
    _validate(predictions, references)
    _require_java()
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts = _tokenize(references)
    res = _tokenize({i: [predictions[i]] for i in references})  # same id order on both sides
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    return {
        "BLEU4": float(bleu[3]),
        "METEOR": _meteor_score(gts, res),
        "ROUGE-L": float(Rouge().compute_score(gts, res)[0]),
        "CIDEr-D": float(Cider().compute_score(gts, res)[0]),
    }


def to_paper_scale(scores: Mapping[str, float]) -> dict[str, float]:
    """Raw caption scores -> Table 11's printed scale (x100 for all four metrics)."""
    return {k: (v * PAPER_SCALE if k in CAPTION_METRICS else v) for k, v in scores.items()}
