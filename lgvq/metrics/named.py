"""What a caption names against what its image shows (embedded data only).

`named_exactly[shape]` / `named_exactly[colour]`: the share of images whose caption names exactly the
set of shapes (colours) the image's objects have, synonyms resolved by the caption reader the
text-to-image check uses (lgvq.data.attributes.caption_attribute_vector). BLEU and CIDEr-D credit a
template caption with the right colour and the wrong shape; this says how often the shape is right.
Kept free of torch, so the tables import the metric names without it.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

NAMED_KINDS = ("shape", "colour")


def named_metric(kind: str) -> str:
    """The metric name of `named_exactly` for one kind: `named_exactly[shape]`."""
    return f"named_exactly[{kind}]"


def named_exactly(captions: Sequence[str], objects: Sequence[list[dict]]) -> dict[str, float]:
    """`named_exactly[shape]`, `named_exactly[colour]`: the share of images whose caption names exactly the set
    of shapes (colours) its objects have (lgvq.data.attributes.caption_attribute_vector: synonyms resolved,
    a name said twice counts once). `objects[i]`: image i's ground-truth objects (`shape`, `colour`)."""
    import numpy as np

    from lgvq.data.attributes import ATTRIBUTE_NAMES, attribute_vector, caption_attribute_vector

    if len(captions) != len(objects):
        raise ValueError(f"named_exactly: {len(captions)} captions for {len(objects)} images")
    if not captions:
        raise ValueError("named_exactly: no captions")
    said = np.stack([caption_attribute_vector(c) for c in captions])
    shown = np.stack([attribute_vector(o) for o in objects])
    out = {}
    for kind in NAMED_KINDS:
        slots = [i for i, name in enumerate(ATTRIBUTE_NAMES) if name.startswith(f"{kind}:")]
        out[named_metric(kind)] = float((said[:, slots] == shown[:, slots]).all(1).mean())
    return out


def named_attributes(records: Sequence[Any], captions: Mapping[int, str]) -> dict[str, float]:
    """`named_exactly` of each record's caption in `captions` (by image id), when every record has ground-truth
    objects (`attributes["objects"]`: the embedded data); {} where the dataset has none."""
    objects = [(r.attributes or {}).get("objects") for r in records]
    if not records or any(o is None for o in objects):
        return {}
    return named_exactly([captions[r.image_id] for r in records], objects)


def named_notes(named: Mapping[str, float], whose: str, n: int) -> dict[str, str]:
    """The table notes of `named_attributes`' metrics."""
    return {named_metric(k): f"share of {n} test images where {whose} names exactly the {k}s the image shows "
                             "(synonyms resolved); embedded data only" for k in NAMED_KINDS if named_metric(k) in named}
