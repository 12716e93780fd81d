"""Text-alignment evaluations (Tables 3 and 4, and retrieval numbers for Fig. 4).

Protocols (the paper leaves them open; these are ours, applied identically to every model):
- Masked-word Recall@1 (+LG models only: it needs the masked-text decoder). On the FIRST
  caption of every test image, k in {1, 3} word tokens are masked at positions drawn with a
  seeded generator among real, non-special tokens; Recall@1 = fraction of masked tokens whose
  top-1 prediction is the original token (Mask-3 is scored per word). Captions with fewer than
  k maskable tokens are not scored for that k, and their number is written in the notes.
  Leak-free variant (ours, beside it): the paper's decoder input is the features of the FULL
  caption with the masked slots overwritten, so the word has leaked into the other positions'
  features; the leak-free score re-encodes the caption with the word replaced by the encoder's
  mask token first.
- Word–code similarity MSE. The base model has no visual-token transformer, so alignment may
  not rely on one: for EVERY model we fit a ridge map from the mean quantised vector of an
  image to its caption's global text feature on the train split (closed form), then align each
  word of a test caption to the grid position whose mapped code is most cosine-similar to it.
  MSE = mean over pairs i != j of real words of (cos(word_i, word_j) - cos(code_i, code_j))^2,
  with codes compared in the tokenizer's own code space. Same map family, same data, for all.
- Image-to-text retrieval R@1/R@5 from the [CLS] embedding (models trained with L_gsa), test
  images vs the global features of their first captions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lgvq.lg.module import reencode_masked

RIDGE = 1e-2


def _first_rows(cache, records) -> list[int]:
    return [cache.row(r.image_id, r.captions[0]) for r in records]


@torch.no_grad()
def _quantised(model, data, records, device, batch: int) -> Iterator[tuple[torch.Tensor, list]]:
    """(z_q (b, D, h, w) on the CPU, the batch's records), `batch` images at a time."""
    for i in range(0, len(data), batch):
        x = torch.stack([data[j]["image"] for j in range(i, min(i + batch, len(data)))]).to(device)
        yield model.encode_latents(x).cpu(), records[i : i + len(x)]  # no decoder: its activations are not needed


def masked_positions(text, k: int, seed: int | None = None,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, int]:
    """(B, L) bool: k real, non-special tokens per caption at seeded positions (none for captions
    with fewer than k such tokens) -> (mask, skipped captions). Pass the same `generator` to
    successive batches of captions to draw the positions one call over all of them would."""
    g = generator if generator is not None else torch.Generator().manual_seed(seed + k)
    maskable = text.valid & ~text.special
    masked = torch.zeros_like(maskable)
    skipped = 0
    for b in range(len(maskable)):
        pos = maskable[b].nonzero().squeeze(1)
        if len(pos) < k:
            skipped += 1
            continue
        masked[b, pos[torch.randperm(len(pos), generator=g)[:k]]] = True
    return masked, skipped


class MaskedRecall:
    """Masked-word Recall@1 accumulated over successive batches of (z_q, captions): the positions
    are drawn from one generator in caption order, so batching does not change them."""

    def __init__(self, k: int, seed: int, encoder=None) -> None:
        self.k, self.encoder = k, encoder
        self.generator = torch.Generator().manual_seed(seed + k)
        self.hits = self.total = self.scored = self.skipped = 0

    def add(self, lg, z_q: torch.Tensor, text) -> None:
        masked, skipped = masked_positions(text, self.k, generator=self.generator)
        self.skipped += skipped
        keep = masked.any(1)
        if not bool(keep.any()):
            return
        t, m = text[keep], masked[keep]
        if self.encoder is not None:
            t = reencode_masked(t, m, self.encoder)
        pred = lg.masked_top1(z_q[keep], t, m)  # never the (B, L, V) logits: ~234 MB a batch of 64
        self.hits += int((pred == t.token_ids[m]).sum())
        self.total += int(m.sum())
        self.scored += int(keep.sum())

    def result(self) -> tuple[float, int, int]:
        """-> (recall, scored captions, skipped captions)."""
        return (self.hits / self.total if self.total else float("nan")), self.scored, self.skipped


def masked_word_recall(lg, z_q: torch.Tensor, text, k: int, seed: int, encoder=None,
                       batch: int = 256) -> tuple[float, int, int]:
    """-> (recall, scored captions, skipped captions). With `encoder`, the leak-free protocol
    (the same masked positions, the caption re-encoded with the words masked); without, the
    paper's (features of the full caption, masked slots overwritten by the [mask] vectors).
    Scored `batch` captions at a time, and only the masked positions are projected onto the vocabulary."""
    acc = MaskedRecall(k, seed, encoder)
    for i in range(0, len(z_q), batch):
        acc.add(lg, z_q[i : i + batch], text[i : i + batch])
    return acc.result()


class RidgeStats:
    """XᵀX and XᵀY of [x, 1] (float64), summed batch by batch: the ridge fit never holds the split."""

    def __init__(self) -> None:
        self.xtx: torch.Tensor | None = None
        self.xty: torch.Tensor | None = None

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        xb = torch.cat([x, torch.ones(len(x), 1)], 1).double()
        xtx, xty = xb.t() @ xb, xb.t() @ y.double()
        self.xtx = xtx if self.xtx is None else self.xtx + xtx
        self.xty = xty if self.xty is None else self.xty + xty

    def solve(self, lam: float = RIDGE) -> torch.Tensor:
        """W with [x, 1] @ W ~ y (closed form)."""
        if self.xtx is None or self.xty is None:
            raise ValueError("ridge fit over no samples")
        a = self.xtx + lam * torch.eye(self.xtx.shape[0], dtype=torch.float64)
        return torch.linalg.solve(a, self.xty).float()


def fit_ridge(x: torch.Tensor, y: torch.Tensor, lam: float = RIDGE) -> torch.Tensor:
    """Closed-form ridge regression with a bias column: returns W with [x, 1] @ W ~ y."""
    stats = RidgeStats()
    stats.add(x, y)
    return stats.solve(lam)


def word_code_errors(z_q: torch.Tensor, text, w_map: torch.Tensor) -> tuple[float, int]:
    """(sum of squared errors, number of word pairs) of a batch: the word–code MSE of a split is
    the sum over its batches divided by the count over them."""
    codes = z_q.flatten(2).transpose(1, 2)                               # (B, N, D)
    mapped = torch.cat([codes, torch.ones(*codes.shape[:2], 1)], -1) @ w_map  # (B, N, Dt)
    real = text.valid & ~text.special
    words = F.normalize(text.tokens, dim=-1)
    pos = (words @ F.normalize(mapped, dim=-1).transpose(1, 2)).argmax(-1)   # (B, L)
    aligned = F.normalize(torch.gather(codes, 1, pos[..., None].expand(-1, -1, codes.shape[-1])), dim=-1)
    q = words @ words.transpose(1, 2)
    p = aligned @ aligned.transpose(1, 2)
    pair = real[:, :, None] & real[:, None, :] & ~torch.eye(real.shape[1], dtype=torch.bool)[None]
    err = (p - q)[pair].double()
    return float((err**2).sum()), int(err.numel())


def word_code_mse(z_q: torch.Tensor, text, w_map: torch.Tensor) -> float:
    total, n = word_code_errors(z_q, text, w_map)
    return total / n if n else float("nan")


def retrieval(cls: torch.Tensor, text_global: torch.Tensor, block: int = 1024) -> dict[str, float]:
    """Image i's caption is text i; R@k = fraction of images whose caption ranks in the top k.
    Ranks are computed for `block` query images at a time: a (block, n) similarity is held, not (n, n)."""
    images, texts = F.normalize(cls, dim=-1), F.normalize(text_global, dim=-1)
    r1 = r5 = 0
    for i in range(0, len(images), block):
        sim = images[i : i + block] @ texts.t()
        true = sim[torch.arange(len(sim)), torch.arange(i, i + len(sim))]
        rank = (sim > true[:, None]).sum(1)  # how many captions beat the true one
        r1, r5 = r1 + int((rank < 1).sum()), r5 + int((rank < 5).sum())
    return {"I2T-R@1": r1 / len(images), "I2T-R@5": r5 / len(images)}


@torch.no_grad()
def evaluate_alignment(model, lg, cache, *, train, test, seed: int, device, encoder=None, batch: int = 64,
                       mtp_input: str = "paper") -> tuple[dict[str, float], dict[str, Any]]:
    """`encoder`: the frozen text encoder, for the leak-free masked-word protocol (skipped without).
    `mtp_input`: what the decoder read in training (`lg.mtp_input`), named in the recall notes.

    Streams both splits `batch` images at a time: the ridge map from XᵀX / XᵀY summed over the
    train split, then every test metric per batch. Held across batches: only the test split's
    [CLS] embeddings and first-caption global features (one vector per image) for retrieval."""
    (train_data, train_recs), (test_data, test_recs) = train, test
    ridge = RidgeStats()
    for z, recs in _quantised(model, train_data, train_recs, device, batch):
        ridge.add(z.mean((2, 3)), _globals(cache, recs))
    w_map = ridge.solve()
    if lg is not None:
        lg = lg.to("cpu").eval()
    mtp, gsa = lg is not None and lg.weights["mtp"] > 0, lg is not None and lg.weights["gsa"] > 0
    recalls = {}
    if mtp:
        for k in (1, 3):
            recalls[k, False] = MaskedRecall(k, seed)
            if encoder is not None:
                recalls[k, True] = MaskedRecall(k, seed, encoder)
    sq_err, pairs = 0.0, 0
    cls, glob = [], []
    for z, recs in _quantised(model, test_data, test_recs, device, batch):
        t = cache.features(_first_rows(cache, recs))
        e, n = word_code_errors(z, t, w_map)
        sq_err, pairs = sq_err + e, pairs + n
        for acc in recalls.values():
            acc.add(lg, z, t)
        if gsa:
            cls.append(lg.cls_embedding(z))
            glob.append(t.global_)
    metrics: dict[str, float] = {"word_code_MSE": sq_err / pairs if pairs else float("nan")}
    notes: dict[str, Any] = {"word_code_MSE": f"ridge-aligned protocol (lgvq.lg.evaluate), {len(test_recs)} test captions, "
                                              f"text encoder {cache.encoder_name}"}
    trained_on = "" if mtp_input == "paper" else f"; the decoder trained on {mtp_input} inputs (lg.mtp_input)"
    for (k, leak_free), acc in recalls.items():
        rec, n, skipped = acc.result()
        if not leak_free:
            metrics[f"Recall@1[Mask-{k}]"] = rec
            notes[f"Recall@1[Mask-{k}]"] = (f"first caption of {n} test images, {k} word token(s) masked, scored "
                                            f"per word; {skipped} captions too short{trained_on}")
        else:
            metrics[f"Recall@1[Mask-{k}, leak-free]"] = rec
            notes[f"Recall@1[Mask-{k}, leak-free]"] = (
                f"the same {n} captions and positions, re-encoded by {encoder.name} with the masked "
                f"word(s) replaced by token id {encoder.mask_id} before encoding{trained_on}")
    if gsa:
        metrics.update(retrieval(torch.cat(cls), torch.cat(glob)))
        notes["I2T-R@1"] = f"{len(test_recs)} test images vs their first captions"
    return metrics, notes


def _globals(cache, records) -> torch.Tensor:
    """The first captions' global features, read without their per-token features."""
    rows = np.asarray(_first_rows(cache, records), dtype=np.int64)
    return torch.from_numpy(np.array(cache.global_[rows], dtype=np.float32))
