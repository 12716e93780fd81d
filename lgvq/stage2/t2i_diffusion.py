"""t2i_diffusion: text-to-image by discrete diffusion over codes (VQ-Diffusion, Table 5), with
cross-attention to a caption's frozen text features."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lgvq.stage2.conditions import caption_features, drop_captions, null_caption
from lgvq.stage2.registry import Conditions, Stage2Context, Stage2Task, generator_size

if TYPE_CHECKING:
    from lgvq.settings import Stage2Settings, TextEncoderSettings


class TextToImageDiffusionTask(Stage2Task):
    name = "t2i_diffusion"
    table_id = "text_to_image"
    scores_caption_attributes = True
    supports_guidance = True
    discrete_diffusion = True

    def conditions(self, ctx: Stage2Context) -> Conditions:
        return caption_features(ctx)

    def network(self, ctx: Stage2Context, cond: Conditions) -> Any:
        from lgvq.stage2.diffusion import TextToCodeDiffusion

        s = ctx.settings
        size = dict(generator_size(s), layers=self.layers(s))
        return TextToCodeDiffusion(ctx.n_codes, ctx.grid[0] * ctx.grid[1], cond.text_dim, steps=s.diffusion_steps,
                                   loss=s.diffusion_loss, **size)

    def loss(self, model: Any, codes: Any, cond: Any) -> Any:
        return model.net.loss(codes.flatten(1), *cond)

    def generate(self, model: Any, n: int, cond: Any, given: Any, generator: Any, device: Any,
                 s: Stage2Settings) -> Any:
        flat = model.net.sample(*cond, generator=generator, temperature=s.temperature, fast=s.fast_path,
                                null=null_caption(cond) if s.guidance_scale != 1.0 else None,
                                guidance=s.guidance_scale, truncation=s.truncation_rate, sampler=s.diffusion_sampler)
        return flat.view(n, *model.grid)

    def drop_conditions(self, cond: Any, drop: Any) -> Any:
        return drop_captions(cond, drop)

    def describe(self, model: Any, s: Stage2Settings) -> str:
        cut = f", truncation rate {s.truncation_rate:g}" if s.truncation_rate < 1 else ""
        cut += f", {s.diffusion_sampler} sampler" if s.diffusion_sampler != "posterior" else ""
        cut += {"x0": "", "vlb": ", trained on the variational bound",
                "masked": ", trained on the [MASK] positions' cross-entropy"}[s.diffusion_loss]
        return super().describe(model, s) + f", {s.diffusion_steps} diffusion steps{cut}"

    def condition_tokens(self, text: TextEncoderSettings, grid: int) -> int:
        return text.max_length

    def layers(self, s: Stage2Settings) -> int:
        return s.diffusion_layers or s.layers

    def sampling_passes(self, s: Stage2Settings) -> int:
        return s.diffusion_steps
