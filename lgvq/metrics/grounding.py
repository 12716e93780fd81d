"""Visual grounding: IoU of boxes and accuracy at IoU > 0.5 (strictly greater, as TransVG counts).

Boxes are COCO/RefCOCO's [x, y, w, h] in pixels (top-left corner, width, height) unless a
function says otherwise. Boxes touching only along an edge or a corner do not overlap (IoU 0);
two zero-area boxes have IoU 0 (there is no area to agree on). Conversions cover the formats
grounding heads use: corners [x1, y1, x2, y2] and TransVG's normalised [cx, cy, w, h] in [0, 1].
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

Box = Sequence[float]


def _as_boxes(boxes: Sequence[Box] | np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{what}: boxes must be [x, y, w, h] (shape (N, 4)), got shape {np.shape(boxes)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what}: boxes contain NaN or inf")
    if (arr[:, 2:] < 0).any():
        raise ValueError(f"{what}: negative width or height in {arr[(arr[:, 2:] < 0).any(1)][0].tolist()}")
    return arr


def iou_xywh_many(a: Sequence[Box] | np.ndarray, b: Sequence[Box] | np.ndarray) -> np.ndarray:
    """(N,) IoU of each pair a[i], b[i] of xywh boxes."""
    A, B = _as_boxes(a, "iou (first boxes)"), _as_boxes(b, "iou (second boxes)")
    if A.shape != B.shape:
        raise ValueError(f"iou: {len(A)} boxes against {len(B)}")
    iw = np.clip(np.minimum(A[:, 0] + A[:, 2], B[:, 0] + B[:, 2]) - np.maximum(A[:, 0], B[:, 0]), 0, None)
    ih = np.clip(np.minimum(A[:, 1] + A[:, 3], B[:, 1] + B[:, 3]) - np.maximum(A[:, 1], B[:, 1]), 0, None)
    inter = iw * ih
    union = A[:, 2] * A[:, 3] + B[:, 2] * B[:, 3] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def iou_xywh(a: Box, b: Box) -> float:
    """IoU of two xywh boxes."""
    return float(iou_xywh_many([a], [b])[0])


def grounding_accuracy(pred: Sequence[Box] | np.ndarray, gt: Sequence[Box] | np.ndarray,
                       threshold: float = 0.5) -> float:
    """Fraction of predictions whose IoU with their ground-truth box is > threshold (strict)."""
    if len(pred) != len(gt) or len(gt) == 0:
        raise ValueError(f"grounding_accuracy: need one predicted box per ground-truth box "
                         f"(got {len(pred)} and {len(gt)})")
    return float((iou_xywh_many(pred, gt) > threshold).mean())


def xywh_to_xyxy(box: Box) -> tuple[float, float, float, float]:
    x, y, w, h = box
    return (x, y, x + w, y + h)


def xyxy_to_xywh(box: Box) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = box
    if x2 < x1 or y2 < y1:
        raise ValueError(f"xyxy box with x2 < x1 or y2 < y1: {list(box)}")
    return (x1, y1, x2 - x1, y2 - y1)


def xywh_to_cxcywh_norm(box: Box, width: float, height: float) -> tuple[float, float, float, float]:
    """Pixel xywh -> centre and size normalised by the image size (the regression target)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    x, y, w, h = box
    return ((x + w / 2) / width, (y + h / 2) / height, w / width, h / height)


def cxcywh_norm_to_xywh(box: Box, width: float, height: float) -> tuple[float, float, float, float]:
    """Inverse of `xywh_to_cxcywh_norm`."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    cx, cy, w, h = box
    return ((cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height)
