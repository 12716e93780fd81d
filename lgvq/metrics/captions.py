"""Caption metrics through pycocoevalcap's own scorers: BLEU-4, METEOR, ROUGE-L, CIDEr-D.

Both sides go through its PTB tokenizer first, as COCOEvalCap does. We do not use COCOEvalCap
itself: it always runs SPICE, which downloads Stanford CoreNLP. METEOR and the tokenizer need
Java; METEOR's JVM is started once per process and reused. Values are returned as pycocoevalcap
computes them (BLEU/METEOR/ROUGE-L in [0, 1]; CIDEr-D with its x10 scaling); tables print x100
for BLEU/METEOR/ROUGE-L and CIDEr-D x100 as the paper does.
"""

from __future__ import annotations

import shutil

_METEOR = None


class JavaMissingError(RuntimeError):
    pass


def _require_java() -> None:
    if shutil.which("java") is None:
        raise JavaMissingError("Java 17 is needed for METEOR and the PTB tokenizer of pycocoevalcap: "
                               "apt-get install default-jre-headless")


def _meteor():
    global _METEOR
    if _METEOR is None:
        from pycocoevalcap.meteor.meteor import Meteor

        _METEOR = Meteor()
    return _METEOR


def caption_scores(predictions: dict[int, str], references: dict[int, list[str]]) -> dict[str, float]:
    """predictions: id -> one caption; references: id -> captions. Same ids on both sides."""
    if set(predictions) != set(references):
        raise ValueError("predictions and references must have the same ids")
    if not predictions:
        raise ValueError("no captions to score")
    _require_java()
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    gts = tok.tokenize({i: [{"caption": c} for c in refs] for i, refs in references.items()})
    res = tok.tokenize({i: [{"caption": predictions[i]}] for i in predictions})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    return {"BLEU4": float(bleu[3]), "METEOR": float(_meteor().compute_score(gts, res)[0]),
            "ROUGE-L": float(Rouge().compute_score(gts, res)[0]), "CIDEr-D": float(Cider().compute_score(gts, res)[0])}
