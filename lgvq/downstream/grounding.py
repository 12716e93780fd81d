"""Visual grounding on codes (Table 8).

Two heads (downstream.grounding_head), both over one bidirectional transformer encoder of
[ code features (P) | expression words (T) ] with type and position embeddings (padding masked);
boxes are (cx, cy, w, h) normalised by the image size, converted to and from the datasets' pixel
(x, y, w, h) with `lgvq.metrics.grounding`.

- `transvg` (the paper's protocol, TransVG): a <reg> token; an MLP on its output regresses the box
  (sigmoid), trained with L1 + GIoU.
- `cells` (default; CenterNet/FCOS style): every code cell scores whether it holds the referred
  object's centre (cross-entropy over the P cells) and regresses that object's box relative to
  itself (centre offset within the cell, size); L1 + GIoU on the true centre cell's box. The
  prediction is the best-scoring cell's box. Localisation becomes a choice among cells the encoder
  already tells apart instead of a regression the <reg> token must learn to route to one cell.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lgvq.downstream.frontend import CodeFrontEnd
from lgvq.downstream.registry import EXAMPLES_SHOWN, DownstreamTask, Evaluation, HeadContext, HeadSetup
from lgvq.downstream.vocab import WordVocab
from lgvq.io import ArtifactError


def cxcywh_to_xyxy(b: Tensor) -> Tensor:
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def generalized_box_iou_loss(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """Mean of 1 - GIoU over pairs of (x1, y1, x2, y2) boxes (Rezatofighi et al. 2019), in the same
    operations as torchvision.ops.generalized_box_iou_loss (tests/test_downstream.py compares them):
    a grounding job would otherwise import torchvision, and with it torch._dynamo, for this alone."""
    boxes1 = boxes1 if boxes1.dtype in (torch.float32, torch.float64) else boxes1.float()
    boxes2 = boxes2 if boxes2.dtype in (torch.float32, torch.float64) else boxes2.float()
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    xi1, yi1, xi2, yi2 = torch.max(x1, x1g), torch.max(y1, y1g), torch.min(x2, x2g), torch.min(y2, y2g)
    inter = torch.zeros_like(x1)
    overlap = (yi2 > yi1) & (xi2 > xi1)
    inter[overlap] = (xi2[overlap] - xi1[overlap]) * (yi2[overlap] - yi1[overlap])
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    iou = inter / (union + eps)
    enclosing = (torch.max(x2, x2g) - torch.min(x1, x1g)) * (torch.max(y2, y2g) - torch.min(y1, y1g))
    giou = iou - ((enclosing - union) / (enclosing + eps))
    return (1 - giou).mean() if giou.numel() > 0 else 0.0 * giou.sum()


def box_losses(pred: Tensor, target: Tensor) -> dict[str, Tensor]:
    """L1 on normalised (cx, cy, w, h) and the generalised-IoU loss, both averaged over boxes."""
    return {"l1": (pred - target).abs().sum(-1).mean(),
            "giou": generalized_box_iou_loss(cxcywh_to_xyxy(pred), cxcywh_to_xyxy(target))}


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

    def losses(self, codes: Tensor, words: Tensor, target: Tensor) -> dict[str, Tensor]:
        return box_losses(self(codes, words), target)

    def predict(self, codes: Tensor, words: Tensor) -> Tensor:
        return self(codes, words)


class CellGroundingModel(nn.Module):
    """Per code cell: a centre score and a box relative to the cell (see the module docstring)."""

    def __init__(self, frontend: CodeFrontEnd, vocab_size: int, *, layers: int, heads: int, max_words: int,
                 dropout: float = 0.1) -> None:
        super().__init__()
        d = frontend.width
        self.frontend = frontend
        self.max_words = max_words
        self.word = nn.Embedding(vocab_size, d, padding_idx=WordVocab.PAD)
        self.word_pos = nn.Parameter(torch.randn(1, max_words + 1, d) * 0.02)
        self.type_emb = nn.Embedding(2, d)  # 0 visual, 1 text
        layer = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.score = nn.Linear(d, 1)
        self.box = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 4))
        gh, gw = frontend.grid
        ys, xs = torch.meshgrid(torch.arange(gh, dtype=torch.float32), torch.arange(gw, dtype=torch.float32), indexing="ij")
        self.register_buffer("cell_origin", torch.stack([xs.flatten() / gw, ys.flatten() / gh], -1))  # (P, 2)
        self.register_buffer("cell_size", torch.tensor([1.0 / gw, 1.0 / gh]))

    def forward(self, codes: Tensor, words: Tensor) -> tuple[Tensor, Tensor]:
        """-> (scores (B, P) logits, boxes (B, P, 4) normalised (cx, cy, w, h) each cell predicts)."""
        B, T = words.shape
        if T > self.word_pos.shape[1]:
            raise ValueError(f"expression of {T} tokens exceeds max_words + 1 = {self.word_pos.shape[1]}")
        vis = self.frontend(codes) + self.type_emb.weight[0]
        txt = self.word(words) + self.word_pos[:, :T] + self.type_emb.weight[1]
        pad = torch.cat([torch.zeros(B, vis.shape[1], dtype=torch.bool, device=words.device), words == WordVocab.PAD], 1)
        cells = self.norm(self.encoder(torch.cat([vis, txt], 1), src_key_padding_mask=pad)[:, : vis.shape[1]])
        raw = self.box(cells)
        centre = self.cell_origin + torch.sigmoid(raw[..., :2]) * self.cell_size  # inside its own cell
        return self.score(cells).squeeze(-1), torch.cat([centre, torch.sigmoid(raw[..., 2:])], -1)

    def centre_cell(self, boxes: Tensor) -> Tensor:
        """(B,) index of the cell holding each normalised (cx, cy, w, h) box's centre (the training target)."""
        gh, gw = self.frontend.grid
        col = (boxes[:, 0] * gw).long().clamp(0, gw - 1)
        row = (boxes[:, 1] * gh).long().clamp(0, gh - 1)
        return row * gw + col

    def losses(self, codes: Tensor, words: Tensor, target: Tensor) -> dict[str, Tensor]:
        scores, boxes = self(codes, words)
        cell = self.centre_cell(target)
        own = boxes[torch.arange(len(cell), device=cell.device), cell]
        return {"cell_ce": nn.functional.cross_entropy(scores, cell), **box_losses(own, target)}

    def predict(self, codes: Tensor, words: Tensor) -> Tensor:
        scores, boxes = self(codes, words)
        return boxes[torch.arange(len(boxes), device=boxes.device), scores.argmax(-1)]


GROUNDING_HEADS = {"cells": CellGroundingModel, "transvg": GroundingModel}


# --- the task ----------------------------------------------------------------------------------

def image_sizes(records) -> dict[int, tuple[int, int]]:
    from PIL import Image

    sizes = {}
    for r in records:
        try:
            with Image.open(r.path) as im:
                sizes[r.image_id] = im.size
        except OSError as e:
            raise ArtifactError(f"unreadable image {r.path}: {e}") from e
    return sizes


def box_frames(source, *ref_splits) -> dict[int, tuple[int, int]]:
    """(width, height) of every image the expressions refer to: the frame their boxes' pixels are in.
    From the refs (instances.json's image entries) where they carry it; otherwise read from the original
    image files, never from a prepared resized copy (`datasets.<n>.prepare_resized`), whose size is not
    the boxes' frame. No split's image records are kept."""
    sizes: dict[int, tuple[int, int]] = {}
    unknown: set[int] = set()
    for refs in ref_splits:
        for r in refs:
            if r.image_wh is not None:
                sizes[r.image_id] = tuple(r.image_wh)
            else:
                unknown.add(r.image_id)
    unknown -= set(sizes)
    if unknown:
        from lgvq.data.resized import ResizedSource

        original = source.base if isinstance(source, ResizedSource) else source  # not the resized copies
        for split in original.splits():
            sizes.update(image_sizes(r for r in original.records(split) if r.image_id in unknown))
    missing = unknown - set(sizes)
    if missing:
        raise ArtifactError(f"{len(missing)} images referred to by expressions are in no split's records "
                            f"(first: {min(missing)})")
    return sizes


class GroundingTask(DownstreamTask):
    name = "grounding"

    def setup(self, ctx: HeadContext) -> HeadSetup:
        from lgvq.downstream.vocab import WordVocab, pad_batch
        from lgvq.metrics.grounding import cxcywh_norm_to_xywh, grounding_accuracy, iou_xywh_many, xywh_to_cxcywh_norm

        source, frontend, train_codes, test_codes, dev = ctx.source, ctx.frontend, ctx.train_codes, ctx.test_codes, ctx.device
        d = ctx.settings
        if ctx.data.resize_mode != "resize":
            raise ArtifactError(f"datasets.{ctx.dataset}.resize_mode: grounding needs 'resize' (a crop would move the boxes "
                                "off the code grid)")
        train, test = source.refs("train"), source.refs("test")
        if not train or not test:
            raise ArtifactError(f"dataset has {len(train)} train / {len(test)} test referring expressions; grounding needs both")
        val_refs = source.refs("val") if "val" in source.splits() else []
        sizes = box_frames(source, train, test, val_refs)
        words = WordVocab.build(r.sentence for r in train)
        model = GROUNDING_HEADS[d.grounding_head](frontend, len(words), layers=d.layers, heads=d.heads, max_words=d.max_words,
                               dropout=d.dropout)

        def target(r):
            w, h = sizes[r.image_id]
            return xywh_to_cxcywh_norm(r.bbox_xywh, w, h)

        def batch_of(rs, table):
            tokens, _ = pad_batch([words.encode(r.sentence, d.max_words) or [WordVocab.UNK] for r in rs])
            return (table.batch([table(r.image_id) for r in rs], dev), tokens.to(dev),
                    torch.as_tensor([target(r) for r in rs], dtype=torch.float32, device=dev))

        def make_batch(idx: list[int], epoch: int):
            return batch_of([train[i] for i in idx], train_codes)

        def val_batches(n: int):
            val = val_refs[:n]
            return [batch_of(val[i : i + 128], test_codes) for i in range(0, len(val), 128)]

        def loss_terms(m, b):
            codes, tokens, boxes = b
            terms = m.losses(codes, tokens, boxes)
            return {**terms, "l1": 5.0 * terms["l1"], "giou": 2.0 * terms["giou"]}  # DETR/TransVG weights

        @torch.no_grad()
        def evaluate(m):
            pred = []
            for i in range(0, len(test), 128):
                rs = test[i : i + 128]
                tokens, _ = pad_batch([words.encode(r.sentence, d.max_words) or [WordVocab.UNK] for r in rs])
                boxes = m.predict(test_codes.batch([test_codes(r.image_id) for r in rs], dev), tokens.to(dev)).cpu().tolist()
                pred += [cxcywh_norm_to_xywh(b, *sizes[r.image_id]) for b, r in zip(boxes, rs)]
            gt = [r.bbox_xywh for r in test]
            ious = iou_xywh_many(pred, gt)
            metrics = {"Accuracy@0.5": grounding_accuracy(pred, gt, 0.5), "mean_IoU": float(np.mean(ious))}
            notes = {"Accuracy@0.5": f"fraction of the {len(test)} test expressions with IoU > 0.5"}
            rows = [{"image_id": r.image_id, "expression": r.sentence, "gt_xywh": list(r.bbox_xywh),
                     "pred_xywh": [round(v, 2) for v in p], "iou": float(iou)} for r, p, iou in zip(test, pred, ious)]
            return Evaluation(metrics, notes, rows, {"examples": rows[:EXAMPLES_SHOWN]})

        return HeadSetup(model, loss_terms, len(train), make_batch, evaluate, {"words": words.to_dict()}, val_batches)

    def example_cells(self, example: dict[str, Any]) -> list[str]:
        return [str(example["image_id"]), example["expression"], f"IoU {example['iou']:.2f}"]
