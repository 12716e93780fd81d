"""Attribute accuracy of generated images (embedded data only).

A text-faithfulness check the paper cannot make on real data: the trained shapes-cnn classifier
reads each generated image, and its predicted attributes (logit > 0) are compared with the
multi-hot attributes named in the condition. A caption names shapes and colours but not always
the object count, so a mask selects which attributes are scored — one mask for all images (A,)
or one per image (N, A). Scores:
- per-attribute accuracy: for each attribute, the fraction of images (where it is scored) whose
  prediction matches; `attribute_accuracy` is the mean over all scored (image, attribute) cells;
- exact match: the fraction of images whose scored attributes are all right.

Attribute accuracy alone cannot say whether samples follow their captions: a generator that ignores
its condition still scores whatever its images' share of absent slots is, and a blurry decoder's
images read as wrong shapes whatever the caption. `CaptionFollowing` scores each sample against its
own caption and against a mismatched one (the next condition's): the difference, `caption_following`,
is 0 in expectation for images that do not depend on their caption, whatever they look like.
The other direction, what a caption of an image names: lgvq.metrics.named.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    return _hits(_shown(classifier, images), wanted, mask)


def _shown(classifier: Callable[[Tensor], Tensor], images: Tensor) -> Tensor:
    """The attributes the classifier sees (logit > 0) in each image, as (N, A) floats."""
    if isinstance(classifier, ShapesCNNExtractor):
        classifier = classifier.model
    if isinstance(classifier, torch.nn.Module):
        classifier.eval()
    return (classifier(as_unit_images(images, "attribute_accuracy images")) > 0).float()


def _hits(shown: Tensor, wanted: Tensor, mask: Tensor) -> tuple[int, int]:
    want = torch.as_tensor(wanted).float()
    m = torch.as_tensor(mask, dtype=torch.bool).expand_as(want)
    return int(((shown == want) & m).sum()), int(m.sum())


def mismatched(items: Sequence) -> list:
    """Each condition's mismatched partner: the next one's, cyclically (item i -> item i + 1 mod n), a
    fixed derangement for n > 1, so the mismatched captions are the same captions, each used once."""
    items = list(items)
    if len(items) < 2:
        raise ValueError("caption_following needs at least 2 conditions (each is scored against another's caption)")
    return items[1:] + items[:1]


@dataclass
class CaptionFollowing:
    """Attribute accuracy of samples against their own captions and against mismatched ones, accumulated
    batch by batch. `add` takes one batch's images with the multi-hot attributes of their own captions
    and of their mismatched captions (`mismatched` over the whole list of conditions, then sliced like
    the images). The classifier reads each image once."""

    right: int = 0
    right_mismatched: int = 0
    scored: int = 0
    scored_mismatched: int = 0

    @torch.no_grad()
    def add(self, classifier: Callable[[Tensor], Tensor], images: Tensor, wanted: Tensor, wanted_mismatched: Tensor,
            mask: Tensor) -> None:
        shown = _shown(classifier, images)
        right, scored = _hits(shown, wanted, mask)
        self.right, self.scored = self.right + right, self.scored + scored
        right, scored = _hits(shown, wanted_mismatched, mask)
        self.right_mismatched, self.scored_mismatched = self.right_mismatched + right, self.scored_mismatched + scored

    def metrics(self) -> dict[str, float]:
        """attribute_accuracy (own captions) and caption_following = that minus the accuracy against the
        mismatched captions (a fraction; > 0 when the images show what their own caption names)."""
        if not self.scored or not self.scored_mismatched:
            raise ValueError("caption_following: no image was scored")
        own = self.right / self.scored
        return {"attribute_accuracy": own, "caption_following": own - self.right_mismatched / self.scored_mismatched}
