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

from typing import Any

import torch
import torch.nn.functional as F

from lgvq.text.base import TextFeatures

RIDGE = 1e-2


def _first_rows(cache, records) -> list[int]:
    return [cache.row(r.image_id, r.captions[0]) for r in records]


@torch.no_grad()
def _quantised(model, data, device, batch: int = 64) -> torch.Tensor:
    out = []
    for i in range(0, len(data), batch):
        x = torch.stack([data[j]["image"] for j in range(i, min(i + batch, len(data)))]).to(device)
        out.append(model(x).z_q.cpu())
    return torch.cat(out)  # (n, D, h, w)


def masked_positions(text, k: int, seed: int) -> tuple[torch.Tensor, int]:
    """(B, L) bool: k real, non-special tokens per caption at seeded positions (none for captions
    with fewer than k such tokens) -> (mask, skipped captions)."""
    g = torch.Generator().manual_seed(seed + k)
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


def reencode_masked(text, masked: torch.Tensor, encoder):
    """The leak-free input: the caption with its masked words replaced by the encoder's mask
    token BEFORE encoding, so no later position has seen the word (CLIP's text tower is causal,
    MiniLM's bidirectional: with the paper's protocol both leak it). Targets stay the original ids."""
    ids = torch.where(masked, torch.full_like(text.token_ids, encoder.mask_id), text.token_ids)
    tokens = encoder.encode_ids(ids, text.valid)
    return TextFeatures(text.token_ids, tokens.to(text.tokens.dtype), text.valid, text.special, text.global_)


def masked_word_recall(lg, z_q: torch.Tensor, text, k: int, seed: int, encoder=None,
                       batch: int = 256) -> tuple[float, int, int]:
    """-> (recall, scored captions, skipped captions). With `encoder`, the leak-free protocol
    (the same masked positions, the caption re-encoded with the words masked); without, the
    paper's (features of the full caption, masked slots overwritten by the [mask] vectors).
    Scored `batch` captions at a time: the (batch, L, V) logits, not the split's, are held."""
    masked, skipped = masked_positions(text, k, seed)
    keep = masked.any(1)
    if not bool(keep.any()):
        return float("nan"), 0, skipped
    text, masked, z_q = text[keep], masked[keep], z_q[keep]
    hits = total = 0
    for i in range(0, len(masked), batch):
        t, m = text[i:i + batch], masked[i:i + batch]
        if encoder is not None:
            t = reencode_masked(t, m, encoder)
        pred = lg.predict_masked(z_q[i:i + batch], t, m).argmax(-1)
        hits += int((pred[m] == t.token_ids[m]).sum())
        total += int(m.sum())
    return hits / total, int(keep.sum()), skipped


def fit_ridge(x: torch.Tensor, y: torch.Tensor, lam: float = RIDGE) -> torch.Tensor:
    """Closed-form ridge regression with a bias column: returns W with [x, 1] @ W ~ y."""
    xb = torch.cat([x, torch.ones(len(x), 1)], 1).double()
    a = xb.t() @ xb + lam * torch.eye(xb.shape[1], dtype=torch.float64)
    return torch.linalg.solve(a, xb.t() @ y.double()).float()


def word_code_mse(z_q: torch.Tensor, text, w_map: torch.Tensor) -> float:
    codes = z_q.flatten(2).transpose(1, 2)                               # (B, N, D)
    mapped = torch.cat([codes, torch.ones(*codes.shape[:2], 1)], -1) @ w_map  # (B, N, Dt)
    real = text.valid & ~text.special
    words = F.normalize(text.tokens, dim=-1)
    pos = (words @ F.normalize(mapped, dim=-1).transpose(1, 2)).argmax(-1)   # (B, L)
    aligned = F.normalize(torch.gather(codes, 1, pos[..., None].expand(-1, -1, codes.shape[-1])), dim=-1)
    q = words @ words.transpose(1, 2)
    p = aligned @ aligned.transpose(1, 2)
    pair = real[:, :, None] & real[:, None, :] & ~torch.eye(real.shape[1], dtype=torch.bool)[None]
    return float(((p - q)[pair] ** 2).mean())


def retrieval(cls: torch.Tensor, text_global: torch.Tensor) -> dict[str, float]:
    sim = F.normalize(cls, dim=-1) @ F.normalize(text_global, dim=-1).t()
    rank = (sim > sim.diagonal()[:, None]).sum(1)  # how many captions beat the true one
    return {"I2T-R@1": float((rank < 1).float().mean()), "I2T-R@5": float((rank < 5).float().mean())}


@torch.no_grad()
def evaluate_alignment(model, lg, cache, *, train, test, seed: int, device,
                       encoder=None) -> tuple[dict[str, float], dict[str, Any]]:
    """`encoder`: the frozen text encoder, for the leak-free masked-word protocol (skipped without)."""
    (train_data, train_recs), (test_data, test_recs) = train, test
    z_train = _quantised(model, train_data, device)
    z_test = _quantised(model, test_data, device)
    t_train = cache.features(_first_rows(cache, train_recs))
    t_test = cache.features(_first_rows(cache, test_recs))
    w_map = fit_ridge(z_train.mean((2, 3)), t_train.global_)
    metrics: dict[str, float] = {"word_code_MSE": word_code_mse(z_test, t_test, w_map)}
    notes: dict[str, Any] = {"word_code_MSE": f"ridge-aligned protocol (lgvq.lg.evaluate), {len(test_recs)} test captions, "
                                              f"text encoder {cache.encoder_name}"}
    if lg is not None:
        lg = lg.to("cpu").eval()
        if lg.weights["mtp"] > 0:
            for k in (1, 3):
                rec, n, skipped = masked_word_recall(lg, z_test, t_test, k, seed)
                metrics[f"Recall@1[Mask-{k}]"] = rec
                notes[f"Recall@1[Mask-{k}]"] = (f"first caption of {n} test images, {k} word token(s) masked, scored "
                                                f"per word; {skipped} captions too short")
                if encoder is not None:
                    rec, n, _ = masked_word_recall(lg, z_test, t_test, k, seed, encoder=encoder)
                    metrics[f"Recall@1[Mask-{k}, leak-free]"] = rec
                    notes[f"Recall@1[Mask-{k}, leak-free]"] = (
                        f"the same {n} captions and positions, re-encoded by {encoder.name} with the masked "
                        f"word(s) replaced by token id {encoder.mask_id} before encoding")
        if lg.weights["gsa"] > 0:
            metrics.update(retrieval(lg.cls_embedding(z_test), t_test.global_))
            notes["I2T-R@1"] = f"{len(test_recs)} test images vs their first captions"
    return metrics, notes
