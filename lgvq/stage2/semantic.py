"""semantic: codes drawn given the test image's label map (Table 6), as in VQ-GAN: the label map is
tokenised by a VQ model trained on label maps (`labelmap_vq`), and CodeGPT reads those label codes as
a prefix as long as the code grid."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lgvq.io import ArtifactError
from lgvq.stage2.registry import Conditions, Stage2Context, Stage2Task

if TYPE_CHECKING:
    from lgvq.settings import TextEncoderSettings


class SemanticTask(Stage2Task):
    name = "semantic"
    table_id = "semantic_synthesis"
    needs_label_maps = True

    def conditions(self, ctx: Stage2Context) -> Conditions:
        import numpy as np
        import torch

        lm_vq, lm_meta = ctx.label_map_vq()
        if lm_vq.grid != ctx.grid[0] or ctx.grid[0] != ctx.grid[1]:
            raise ArtifactError(f"the label-map VQ encodes to {lm_vq.grid}x{lm_vq.grid}, the tokenizer to {ctx.grid}")
        # A batch's label codes, encoded when the batch asks for them, one map at a time as before: encoding
        # every record's map up front held a code grid per image and, at 30k images, ran >20 min before step 1.
        def label_codes(record: Any) -> Any:
            return lm_vq.encode(torch.as_tensor(ctx.label_map(record))[None])[0].numpy()

        def of(records: list[Any], captions: list[str]) -> Any:
            return torch.as_tensor(np.stack([label_codes(r) for r in records]), device=ctx.device)

        return Conditions(of, n_classes=lm_meta["n_embed"])

    def prefix_length(self, ctx: Stage2Context, cond: Conditions) -> int:
        return ctx.grid[0] * ctx.grid[1]

    def condition_module(self, ctx: Stage2Context, cond: Conditions) -> Any:
        from torch import nn

        return nn.Embedding(cond.n_classes, ctx.settings.width)

    def prefix(self, model: Any, cond: Any) -> Any:
        return model.cond(cond.flatten(1))

    def condition_tokens(self, text: TextEncoderSettings, grid: int) -> int:
        return grid
