"""Grounding: IoU of COCO xywh boxes and accuracy at IoU > 0.5 (strictly greater, as TransVG)."""

from __future__ import annotations

from typing import Sequence

Box = Sequence[float]


def iou_xywh(a: Box, b: Box) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def grounding_accuracy(pred: list[Box], gt: list[Box], threshold: float = 0.5) -> float:
    if len(pred) != len(gt) or not gt:
        raise ValueError("need one predicted box per ground-truth box")
    return sum(iou_xywh(p, g) > threshold for p, g in zip(pred, gt)) / len(gt)


def xywh_to_cxcywh_norm(box: Box, width: float, height: float) -> tuple[float, float, float, float]:
    x, y, w, h = box
    return ((x + w / 2) / width, (y + h / 2) / height, w / width, h / height)


def cxcywh_norm_to_xywh(box: Box, width: float, height: float) -> tuple[float, float, float, float]:
    cx, cy, w, h = box
    return ((cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height)
