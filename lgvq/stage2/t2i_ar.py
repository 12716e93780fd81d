"""t2i_ar: text-to-image by CodeGPT reading a caption's frozen text features as a prefix (the
autoregressive option of Table 5; its metrics are tagged AR-GPT)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lgvq.stage2.conditions import caption_features
from lgvq.stage2.registry import Conditions, Stage2Context, Stage2Task

if TYPE_CHECKING:
    from lgvq.settings import TextEncoderSettings


class TextToImageARTask(Stage2Task):
    name = "t2i_ar"
    table_id = "text_to_image"
    metric_tag = "AR-GPT"
    scores_caption_attributes = True

    def conditions(self, ctx: Stage2Context) -> Conditions:
        return caption_features(ctx)

    def prefix_length(self, ctx: Stage2Context, cond: Conditions) -> int:
        return cond.text_len

    def condition_module(self, ctx: Stage2Context, cond: Conditions) -> Any:
        from torch import nn

        return nn.Linear(cond.text_dim, ctx.settings.width)

    def prefix(self, model: Any, cond: Any) -> Any:
        tokens, valid = cond
        return model.cond(tokens) * valid[..., None]  # padded text positions contribute nothing

    def condition_tokens(self, text: TextEncoderSettings, grid: int) -> int:
        return text.max_length
