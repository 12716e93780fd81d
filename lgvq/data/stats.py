"""Dataset statistics (the Foundation table): pure, no torch."""

from __future__ import annotations

from collections import Counter
from typing import Any

from lgvq.io import ArtifactError

QTYPE_NAMES = {0: "object", 1: "number", 2: "color", 3: "location"}


def dataset_statistics(source) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for split in source.splits():
        recs = source.records(split)
        per_image = [len(r.captions) for r in recs]
        vocab = {w for r in recs for c in r.captions for w in c.lower().split()}
        row: dict[str, Any] = {
            "images": len(recs), "captions": sum(per_image),
            "captions_per_image_mean": sum(per_image) / len(recs),
            "captions_per_image_min": min(per_image), "captions_per_image_max": max(per_image),
            "vocabulary": len(vocab),
        }
        try:
            qtypes = Counter(QTYPE_NAMES.get(q.qtype, str(q.qtype)) for q in source.qa(split))
            row.update({f"qa_{k}": v for k, v in sorted(qtypes.items())})
        except ArtifactError:
            pass  # this dataset has no QA annotations: the column stays empty, by design
        try:
            refs = source.refs(split)
            row["boxes_per_image"] = len({r.ref_id for r in refs}) / len(recs)
            row["expressions"] = len(refs)
        except ArtifactError:
            pass
        out[split] = row
    return out
