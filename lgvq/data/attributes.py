"""Ground-truth attribute vectors of the embedded data.

Used to train the offline FID feature extractor (shapes-cnn) and to score whether a generated
image shows what its condition asked for. Multi-hot over: shapes present, colours present,
and a one-hot object count (1..3).
"""

from __future__ import annotations

import numpy as np

from lgvq.data.synth import COLOURS, SHAPES, SYNONYMS

ATTRIBUTE_NAMES: tuple[str, ...] = (
    *(f"shape:{s}" for s in SHAPES), *(f"colour:{c}" for c in sorted(COLOURS)), "count:1", "count:2", "count:3"
)
_INDEX = {name: i for i, name in enumerate(ATTRIBUTE_NAMES)}
# The slots a caption's attributes are scored on: shapes and colours; a caption does not always say the count.
CAPTION_SCORED: tuple[bool, ...] = tuple(not name.startswith("count:") for name in ATTRIBUTE_NAMES)


def attribute_vector(objects: list[dict]) -> np.ndarray:
    v = np.zeros(len(ATTRIBUTE_NAMES), dtype=np.float32)
    for o in objects:
        v[_INDEX[f"shape:{o['shape']}"]] = 1
        v[_INDEX[f"colour:{o['colour']}"]] = 1
    v[_INDEX[f"count:{len(objects)}"]] = 1
    return v


def caption_attribute_vector(caption: str) -> np.ndarray:
    """Shapes and colours a caption names (synonyms resolved); the count slots stay 0."""
    text = f" {caption.lower()} "
    v = np.zeros(len(ATTRIBUTE_NAMES), dtype=np.float32)
    for shape, words in SYNONYMS.items():
        if any(f" {w} " in text for w in words):
            v[_INDEX[f"shape:{shape}"]] = 1
    for colour in COLOURS:
        if f" {colour} " in text:
            v[_INDEX[f"colour:{colour}"]] = 1
    return v
