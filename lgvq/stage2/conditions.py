"""Conditions shared by several second-stage tasks."""

from __future__ import annotations

from typing import Any

from lgvq.stage2.registry import Conditions, Stage2Context


def caption_features(ctx: Stage2Context) -> Conditions:
    """A caption's frozen per-token text features from the dataset's text cache: (tokens (B, L, Dt),
    valid (B, L)) on the job's device (the text-to-image tasks)."""
    cache = ctx.text_cache()

    def of(records: list[Any], captions: list[str]) -> Any:
        f = cache.features([cache.row(r.image_id, c) for r, c in zip(records, captions)])
        return f.tokens.to(ctx.device), f.valid.to(ctx.device)

    return Conditions(of, text_dim=cache.width, text_len=int(cache.tokens.shape[1]), text_encoder=cache.describe())
