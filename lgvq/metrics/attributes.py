"""Attribute accuracy of generated images (embedded data only).

A text-faithfulness check the paper cannot make on real data: the trained shapes-cnn classifier
reads each generated image, and its predicted attributes (logit > 0) are compared with the
multi-hot attributes named in the condition. A caption names shapes and colours but not always
the object count, so a mask selects which attributes are scored — one mask for all images (A,)
or one per image (N, A). Scores:
- per-attribute accuracy: for each attribute, the fraction of images (where it is scored) whose
  prediction matches; `attribute_accuracy` is the mean over all scored (image, attribute) cells;
- exact match: the fraction of images whose scored attributes are all right.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from lgvq.metrics.extractors import ShapesCNNExtractor, as_unit_images


@torch.no_grad()
def attribute_report(classifier: Callable[[Tensor], Tensor], images: Tensor, wanted: Tensor,
                       mask: Tensor | None = None, *, attribute_names: Sequence[str] | None = None,
                       batch_size: int = 256) -> dict:
    """classifier: images in [-1, 1] -> logits (N, A) (a ShapesCNN, or a ShapesCNNExtractor whose
    model is used); images: (N, 3, H, W) uint8 or float in [-1, 1]; wanted: multi-hot (N, A).
    Returns attribute_accuracy, exact_match, per_attribute {name: accuracy}, n_images."""
    if isinstance(classifier, ShapesCNNExtractor):
        classifier = classifier.model
    if isinstance(classifier, torch.nn.Module):
        classifier.eval()
    x = as_unit_images(images, "attribute_accuracy images")
    want = torch.as_tensor(wanted).float()
    if want.ndim != 2 or len(want) != len(x):
        raise ValueError(f"attribute_accuracy: wanted must be (N, A) with N={len(x)}, got {tuple(want.shape)}")
    logits = torch.cat([classifier(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    if logits.shape != want.shape:
        raise ValueError(f"attribute_accuracy: classifier gives {tuple(logits.shape)} logits for wanted {tuple(want.shape)}")
    if mask is None:
        m = torch.ones_like(want, dtype=torch.bool)
    else:
        m = torch.as_tensor(mask, dtype=torch.bool)
        m = m.expand_as(want) if m.shape in (want.shape[1:], (1, want.shape[1])) else m
        if m.shape != want.shape:
            raise ValueError(f"attribute_accuracy: mask must be (A,) or (N, A), got {tuple(torch.as_tensor(mask).shape)}")
    if not m.any():
        raise ValueError("attribute_accuracy: the mask selects no attribute")
    correct = ((logits > 0).float() == want) & m
    per_attr_n = m.sum(0)
    names = list(attribute_names) if attribute_names is not None else [str(i) for i in range(want.shape[1])]
    if len(names) != want.shape[1]:
        raise ValueError(f"attribute_accuracy: {len(names)} attribute names for {want.shape[1]} attributes")
    scored_images = m.any(1)
    return {
        "attribute_accuracy": float(correct.sum() / m.sum()),
        "exact_match": float(((correct == m).all(1) & scored_images).sum() / scored_images.sum()),
        "per_attribute": {k: float(c / n) for k, c, n in zip(names, correct.sum(0), per_attr_n) if n > 0},
        "n_images": int(scored_images.sum()),
    }


def attribute_accuracy(classifier: Callable[[Tensor], Tensor], images: Tensor, wanted: Tensor,
                       mask: Tensor | None = None) -> dict[str, float]:
    """The two summary numbers of `attribute_report`: attribute_accuracy and exact_match."""
    r = attribute_report(classifier, images, wanted, mask)
    return {"attribute_accuracy": r["attribute_accuracy"], "exact_match": r["exact_match"]}


@torch.no_grad()
def attribute_hits(classifier: Callable[[Tensor], Tensor], images: Tensor, wanted: Tensor,
                   mask: Tensor) -> tuple[int, int]:
    """(right, scored) (image, attribute) cells of one batch: `attribute_accuracy` over images seen
    batch by batch is the sum of `right` over the sum of `scored` (mask: (A,) or (N, A))."""
    if isinstance(classifier, ShapesCNNExtractor):
        classifier = classifier.model
    if isinstance(classifier, torch.nn.Module):
        classifier.eval()
    want = torch.as_tensor(wanted).float()
    logits = classifier(as_unit_images(images, "attribute_accuracy images"))
    m = torch.as_tensor(mask, dtype=torch.bool).expand_as(want)
    return int((((logits > 0).float() == want) & m).sum()), int(m.sum())
