"""t2i_ar: text-to-image by CodeGPT reading a caption's frozen text features as a prefix (the
autoregressive option of Table 5; its metrics are tagged AR-GPT)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lgvq.stage2.conditions import caption_features, drop_captions, null_caption
from lgvq.stage2.registry import Conditions, Stage2Context, Stage2Task

if TYPE_CHECKING:
    from lgvq.settings import Stage2Settings, TextEncoderSettings


class TextToImageARTask(Stage2Task):
    name = "t2i_ar"
    table_id = "text_to_image"
    metric_tag = "AR-GPT"
    scores_caption_attributes = True
    supports_guidance = True

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

    def drop_conditions(self, cond: Any, drop: Any) -> Any:
        return drop_captions(cond, drop)

    def generate(self, model: Any, n: int, cond: Any, given: Any, generator: Any, device: Any,
                 s: Stage2Settings) -> Any:
        if s.guidance_scale == 1.0:
            return super().generate(model, n, cond, given, generator, device, s)
        flat = model.net.sample(n, prefix=self.prefix(model, cond), given=given, temperature=s.temperature,
                                top_k=s.top_k, top_p=s.top_p, generator=generator, device=device, fast=s.fast_path,
                                null_prefix=self.prefix(model, null_caption(cond)), guidance=s.guidance_scale)
        return flat.view(n, *model.grid)

    def condition_tokens(self, text: TextEncoderSettings, grid: int) -> int:
        return text.max_length
