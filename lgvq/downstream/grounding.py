"""Visual grounding on codes (Table 8), TransVG style.

[ <reg> | code features (P) | expression words (T) ] with type and position embeddings go through
a bidirectional transformer encoder (padding masked); an MLP on the <reg> output predicts the box
as (cx, cy, w, h) normalised by the image size (sigmoid), trained with L1 + GIoU. Boxes are
converted to and from the datasets' pixel (x, y, w, h) with `lgvq.metrics.grounding`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lgvq.downstream.frontend import CodeFrontEnd
from lgvq.downstream.vocab import WordVocab


def cxcywh_to_xyxy(b: Tensor) -> Tensor:
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def box_losses(pred: Tensor, target: Tensor) -> dict[str, Tensor]:
    """L1 on normalised (cx, cy, w, h) and the generalised-IoU loss, both averaged over boxes."""
    from torchvision.ops import generalized_box_iou_loss

    return {"l1": (pred - target).abs().sum(-1).mean(),
            "giou": generalized_box_iou_loss(cxcywh_to_xyxy(pred), cxcywh_to_xyxy(target), reduction="mean")}


class GroundingModel(nn.Module):
    def __init__(self, frontend: CodeFrontEnd, vocab_size: int, *, layers: int, heads: int, max_words: int,
                 dropout: float = 0.1) -> None:
        super().__init__()
        d = frontend.width
        self.frontend = frontend
        self.max_words = max_words
        self.word = nn.Embedding(vocab_size, d, padding_idx=WordVocab.PAD)
        self.word_pos = nn.Parameter(torch.randn(1, max_words + 1, d) * 0.02)
        self.reg = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.type_emb = nn.Embedding(3, d)  # 0 <reg>, 1 visual, 2 text
        layer = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.box = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 4))

    def forward(self, codes: Tensor, words: Tensor) -> Tensor:
        """codes (B, h, w), words (B, T) right-padded ids -> boxes (B, 4) normalised (cx, cy, w, h)."""
        B, T = words.shape
        if T > self.word_pos.shape[1]:
            raise ValueError(f"expression of {T} tokens exceeds max_words + 1 = {self.word_pos.shape[1]}")
        vis = self.frontend(codes) + self.type_emb.weight[1]
        txt = self.word(words) + self.word_pos[:, :T] + self.type_emb.weight[2]
        reg = self.reg.expand(B, -1, -1) + self.type_emb.weight[0]
        x = torch.cat([reg, vis, txt], 1)
        pad = torch.cat([torch.zeros(B, 1 + vis.shape[1], dtype=torch.bool, device=words.device),
                         words == WordVocab.PAD], 1)
        return torch.sigmoid(self.box(self.encoder(x, src_key_padding_mask=pad)[:, 0]))
