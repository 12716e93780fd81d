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


def null_caption(cond: Any) -> Any:
    """The null caption of a batch of caption features (classifier-free guidance): zero features with one
    valid position, so attention has a key to read and a prefix a (learnt, bias-only) embedding."""
    tokens, valid = cond
    null_valid = valid.new_zeros(valid.shape)
    null_valid[:, 0] = True
    return tokens.new_zeros(tokens.shape), null_valid


def drop_captions(cond: Any, drop: Any) -> Any:
    """The batch with the rows where `drop` (B,) is True replaced by the null caption (training with
    stage2.cond_dropout)."""
    import torch

    if not bool(drop.any()):
        return cond
    tokens, valid = cond
    null_tokens, null_valid = null_caption(cond)
    keep = ~drop.to(valid.device)
    return (torch.where(keep[:, None, None], tokens, null_tokens), torch.where(keep[:, None], valid, null_valid))
