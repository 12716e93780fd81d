"""VQCT (Zhang et al., CVPR 2024, "Codebook Transfer with Part-of-Speech for Vector-Quantized
Image Modeling"): the codebook is not free parameters but a learnable map of FROZEN pretrained
word embeddings, so codes inherit the words' relations.

Essentials implemented: code_k = MLP(GCN(E))_k where E (K, Dt) are the text encoder's token
embeddings of a vocabulary (see lgvq.pipeline.tokenizer.vqct_vocabulary_embeddings), and the
GCN propagates over a cosine k-nearest-neighbour graph of those embeddings (symmetric,
self-loops, degree-normalised). Simplifications, documented: VQCT's adjective/noun vocabulary
and part-of-speech co-occurrence graph become the caption vocabulary and an embedding kNN
graph; one GCN layer. The rest of the model and its losses are VQ-GAN's.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lgvq.tokenizers.needs import Needs
from lgvq.tokenizers.quantizers import VectorQuantizer, full_precision
from lgvq.tokenizers.vqgan import VQGAN


def knn_graph(emb: Tensor, k: int) -> Tensor:
    """Degree-normalised adjacency D^-1/2 (A + I) D^-1/2 of a symmetric cosine kNN graph."""
    e = F.normalize(emb, dim=1)
    sim = e @ e.t()
    sim.fill_diagonal_(-float("inf"))
    k = min(k, emb.shape[0] - 1)
    idx = sim.topk(k, dim=1).indices
    a = torch.zeros_like(sim).scatter_(1, idx, 1.0)
    a = ((a + a.t()) > 0).float() + torch.eye(len(a))
    d = a.sum(1).rsqrt()
    return d[:, None] * a * d[None]


class TransferredCodebookQuantizer(VectorQuantizer):
    def __init__(self, word_embeddings: Tensor, embed_dim: int, k: int = 8, hidden: int = 256) -> None:
        super().__init__(word_embeddings.shape[0], embed_dim)
        del self.embedding  # the codebook is computed, not stored
        self.register_buffer("words", word_embeddings.float())
        self.register_buffer("adjacency", knn_graph(word_embeddings.float(), k))
        self.gcn = nn.Linear(word_embeddings.shape[1], hidden)
        self.mlp = nn.Sequential(nn.GELU(), nn.Linear(hidden, embed_dim))

    def weight(self) -> Tensor:
        """(K, D) codes, in fp32 inside autocast: code assignment compares distances between them.
        VectorQuantizer.forward computes them once per forward pass."""
        with full_precision(self.words):
            return self.mlp(self.adjacency @ self.gcn(self.words))


class VQCT(VQGAN):
    needs = Needs(word_embeddings=True)  # the pipeline hands over the caption vocabulary's embeddings

    def __init__(self, *, word_embeddings: Callable[[int], Tensor], gcn_k: int = 8, gcn_hidden: int = 256,
                 **params) -> None:
        self._words = word_embeddings
        self._gcn = (gcn_k, gcn_hidden)
        super().__init__(**params)

    def make_quantizer(self, n_embed: int, embed_dim: int) -> VectorQuantizer:
        words = self._words(n_embed)
        if words.shape[0] != n_embed:
            raise ValueError(f"vqct: {words.shape[0]} word embeddings for a codebook of n_embed={n_embed}")
        return TransferredCodebookQuantizer(words, embed_dim, *self._gcn)

    def describe(self) -> dict:
        return {**super().describe(), "codebook": f"transferred from {self.codebook_size} frozen word embeddings "
                                                  f"(GCN over a {self._gcn[0]}-NN graph + MLP)"}
