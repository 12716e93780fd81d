"""CVQ (Zheng & Vedaldi, ICCV 2023): VQ-GAN losses with the online clustered codebook, whose
dead codes are re-initialised at encoder features (see quantizers.ClusteredVectorQuantizer).
The LG-VQ paper trains CVQ with the VQ-GAN objective; so do we."""

from __future__ import annotations

from lgvq.tokenizers.quantizers import ClusteredVectorQuantizer, VectorQuantizer
from lgvq.tokenizers.vqgan import VQGAN


class CVQ(VQGAN):
    """`cvq_distance`, `cvq_anchor`, `cvq_contrastive`: see ClusteredVectorQuantizer (the
    authors' LG_cvq: "l2", "probrandom", true)."""

    def __init__(self, *, cvq_decay: float = 0.99, cvq_distance: str = "l2", cvq_anchor: str = "closest",
                 cvq_contrastive: bool = False, **params) -> None:
        self._cvq = dict(decay=cvq_decay, distance=cvq_distance, anchor=cvq_anchor, contrastive=cvq_contrastive)
        super().__init__(**params)

    def make_quantizer(self, n_embed: int, embed_dim: int) -> VectorQuantizer:
        return ClusteredVectorQuantizer(n_embed, embed_dim, **self._cvq)

    def describe(self) -> dict:
        c = self._cvq
        return {**super().describe(), "codebook": (
            f"online clustered (usage EMA decay {c['decay']}, {c['distance']} distance, {c['anchor']} anchors, "
            f"contrastive term {'on' if c['contrastive'] else 'off'})")}
