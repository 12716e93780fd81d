"""CVQ (Zheng & Vedaldi, ICCV 2023): VQ-GAN losses with the online clustered codebook, whose
dead codes are re-initialised at encoder features (see quantizers.ClusteredVectorQuantizer).
The LG-VQ paper trains CVQ with the VQ-GAN objective; so do we."""

from __future__ import annotations

from lgvq.tokenizers.quantizers import ClusteredVectorQuantizer, VectorQuantizer
from lgvq.tokenizers.vqgan import VQGAN


class CVQ(VQGAN):
    def __init__(self, *, cvq_decay: float = 0.99, cvq_threshold: float = 1e-3, **params) -> None:
        self._cvq = (cvq_decay, cvq_threshold)
        super().__init__(**params)

    def make_quantizer(self, n_embed: int, embed_dim: int) -> VectorQuantizer:
        return ClusteredVectorQuantizer(n_embed, embed_dim, decay=self._cvq[0], threshold=self._cvq[1])

    def describe(self) -> dict:
        return {**super().describe(), "codebook": f"online clustered (decay {self._cvq[0]}, threshold {self._cvq[1]})"}
