"""`lgvq text cache`: encode every caption of a dataset once with the frozen text encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lgvq.manifest import RunRecord
from lgvq.pipeline import jobs
from lgvq.pipeline.common import dataset_source, device
from lgvq.settings import text_encoder_settings


def build_cache(cfg: dict[str, Any], dataset: str, out: Path) -> Path:
    from lgvq.pipeline.artifacts import frozen_text_encoder
    from lgvq.text.cache import build_text_cache

    text = text_encoder_settings(cfg)
    record = RunRecord("text/cache", jobs.text_cache(cfg, dataset))
    source = dataset_source(cfg, dataset)
    captions: dict[int, list[str]] = {}
    for split in source.splits():
        for rec in source.records(split):
            captions[rec.image_id] = list(rec.captions)
    # The encoder runs on the job's device (a GPU when it has one): features are stored the same either way.
    encoder = frozen_text_encoder(cfg, device(cfg))
    build_text_cache(captions, encoder, out)
    record.write(out.parent, name=out.stem + ".manifest.json", text_encoder=text.name,
                 text_model=getattr(encoder, "model_id", None), captions=sum(len(c) for c in captions.values()))
    return out
