"""Attribute accuracy of generated images on the embedded data: the shapes-cnn classifier reads
each generated image, and its predicted shapes/colours are compared with those named in the
condition (a text-faithfulness check the paper cannot make on real data)."""

from __future__ import annotations

import torch


@torch.no_grad()
def attribute_accuracy(classifier, images: torch.Tensor, wanted: torch.Tensor,
                       mask: torch.Tensor | None = None) -> dict[str, float]:
    """images in [-1, 1] (N, 3, H, W); wanted multi-hot (N, A); `mask` (A,) selects the attributes
    the condition specifies (e.g. shapes and colours, not the count, for captions)."""
    pred = (classifier(images) > 0).float()
    if mask is not None:
        pred, wanted = pred[:, mask], wanted[:, mask]
    correct = pred == wanted
    return {"attribute_accuracy": float(correct.float().mean()), "exact_match": float(correct.all(1).float().mean())}
