"""CVQ (Zheng & Vedaldi, ICCV 2023): VQ-GAN losses with the online clustered codebook, whose
dead codes are re-initialised at encoder features (see quantizers.ClusteredVectorQuantizer).
The LG-VQ paper trains CVQ with the VQ-GAN objective; so do we."""

from __future__ import annotations

from lgvq.tokenizers.quantizers import ClusteredVectorQuantizer, VectorQuantizer
from lgvq.tokenizers.vqgan import VQGAN


class CVQ(VQGAN):
    def __init__(self, *, cvq_decay: float = 0.99, **params) -> None:
        self._cvq_decay = cvq_decay
        super().__init__(**params)

    def make_quantizer(self, n_embed: int, embed_dim: int) -> VectorQuantizer:
        return ClusteredVectorQuantizer(n_embed, embed_dim, decay=self._cvq_decay)

    def describe(self) -> dict:
        return {**super().describe(), "codebook": f"online clustered (usage EMA decay {self._cvq_decay}, closest-feature anchors)"}
