"""The text-side references (lgvq.pipeline.references): the training word prior on the masked-word protocol,
chance retrieval, and the word–code MSE of a random codebook.

Each one is scored by the models' own code (lgvq.lg.evaluate): the same masked positions (one generator per
k, in caption order, seeded by `eval.mask_eval_seed`), the same captions (the first of every test image),
the same ridge-aligned word–code protocol.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lgvq.pipeline import paths
from lgvq.pipeline.artifacts import CodeTable, text_cache
from lgvq.pipeline.common import dataset_source
from lgvq.pipeline.reference_jobs import Measured
from lgvq.pipeline.references import Reference
from lgvq.settings import eval_settings

ROWS = 4096      # caption rows counted at a time for the prior
SCORED = 16      # captions scored at a time
BATCH = 64


def position_prior(token_ids: np.ndarray, maskable: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
    """Add the (rows, L) token ids at maskable positions to `counts` (L, vocabulary), returned (grown when an id
    is past its end). The prior of position p is `counts[p].argmax()`: the most frequent word there."""
    L = token_ids.shape[1]
    vocab = int(token_ids[maskable].max()) + 1 if maskable.any() else 1
    if counts is None:
        counts = np.zeros((L, vocab), dtype=np.int64)
    elif counts.shape[1] < vocab:
        counts = np.concatenate([counts, np.zeros((L, vocab - counts.shape[1]), dtype=np.int64)], 1)
    pos = np.broadcast_to(np.arange(L), token_ids.shape)
    np.add.at(counts, (pos[maskable], token_ids[maskable]), 1)
    return counts


class PriorDecoder:
    """Stands in for the LG module's masked-text decoder (`masked_top1`): whatever the image and the rest
    of the caption, it predicts the most frequent training word at each masked position."""

    def __init__(self, prior: np.ndarray) -> None:
        self.prior = torch.as_tensor(prior, dtype=torch.long)

    def _ids(self, L: int) -> torch.Tensor:
        return self.prior[:L] if len(self.prior) >= L else torch.cat([self.prior, torch.zeros(L - len(self.prior), dtype=torch.long)])

    def masked_top1(self, z_q: torch.Tensor, text, masked: torch.Tensor) -> torch.Tensor:
        """The prior's word at every masked position, in `logits[masked]` order (what the LG module's
        `masked_top1` returns; the accumulator scores that)."""
        B, L = masked.shape
        return self._ids(L)[None, :].expand(B, L)[masked]


def prior_recall(decoder: PriorDecoder, captions, k: int, seed: int) -> tuple[float, int, int]:
    """Masked-word Recall@1 of `decoder` on an iterable of caption batches (TextFeatures), scored by the LG
    decoder's own accumulator -> (recall, scored captions, skipped captions)."""
    from lgvq.lg.evaluate import MaskedRecall

    acc = MaskedRecall(k, seed)
    for t in captions:
        for i in range(0, len(t.token_ids), SCORED):
            part = t[i : i + SCORED]
            acc.add(decoder, torch.zeros(len(part.token_ids), 1), part)
    return acc.result()


def _first_rows(cache, records) -> list[int]:
    return [cache.row(r.image_id, r.captions[0]) for r in records]


def word_prior(cfg: dict[str, Any], ref: Reference, dataset: str, tokenizer: None, seed: int) -> dict[str, Measured]:
    cache = text_cache(cfg, dataset)
    source = dataset_source(cfg, dataset)
    train, test = source.records("train"), source.records("test")
    rows = np.asarray(sorted({r for rec in train for r in cache.rows_for_image(rec.image_id)}), dtype=np.int64)
    counts = None
    for i in range(0, len(rows), ROWS):
        idx = rows[i : i + ROWS]
        maskable = np.asarray(cache.valid[idx], dtype=bool) & ~np.asarray(cache.special[idx], dtype=bool)
        counts = position_prior(np.asarray(cache.token_ids[idx], dtype=np.int64), maskable, counts)
    if counts is None:
        raise ValueError(f"word prior: dataset '{dataset}' has no training captions")
    decoder = PriorDecoder(counts.argmax(1))
    mask_seed = eval_settings(cfg).mask_eval_seed
    metrics, notes = {}, {}
    for k in (1, 3):
        batches = (cache.features(_first_rows(cache, test[i : i + BATCH])) for i in range(0, len(test), BATCH))
        recall, n, skipped = prior_recall(decoder, batches, k, mask_seed)
        how = (f"the most frequent word at each position over {len(rows)} training captions; first caption of {n} "
               f"test images, {k} word token(s) masked at the LG decoder's positions (seed {mask_seed}); "
               f"{skipped} captions too short")
        metrics[f"Recall@1[Mask-{k}]"] = metrics[f"Recall@1[Mask-{k}, leak-free]"] = recall
        notes[f"Recall@1[Mask-{k}]"] = how
        notes[f"Recall@1[Mask-{k}, leak-free]"] = how + "; the prior reads no caption features: leak-free is the same"
    return {"text_alignment": Measured(metrics, notes, labels={"text_encoder": cache.encoder_name})}


def chance(cfg: dict[str, Any], ref: Reference, dataset: str, tokenizer: None, seed: int) -> dict[str, Measured]:
    """Image-to-text R@k of a ranking that knows nothing: the true caption is in the top k of n with
    probability k / n (exact, no draw)."""
    n = len(dataset_source(cfg, dataset).records("test"))
    metrics = {f"I2T-R@{k}": min(k, n) / n for k in (1, 5)}
    note = f"k / n over {n} test images vs their first captions (exact)"
    return {"text_alignment": Measured(metrics, {m: note for m in metrics})}


def random_like(codebook: np.ndarray, seed: int) -> torch.Tensor:
    """A codebook of `codebook`'s shape drawn from N(0, std²), std = the trained codebook's (all entries)."""
    g = torch.Generator().manual_seed(seed)
    sigma = float(np.std(codebook))
    return torch.randn(codebook.shape, generator=g) * sigma


def _quantised(table: CodeTable, codebook: torch.Tensor, records) -> torch.Tensor:
    """z_q (B, D, h, w) of `records` from their code grids looked up in `codebook`."""
    codes = table.batch([table(r.image_id) for r in records], "cpu")
    return codebook[codes].permute(0, 3, 1, 2)


@torch.no_grad()
def codebook_word_code_mse(codebook: torch.Tensor, cache, train: tuple[CodeTable, list], test: tuple[CodeTable, list]) -> float:
    """The word–code MSE protocol of lgvq.lg.evaluate (ridge map fitted on the train split, words aligned to
    grid positions on the test split) with z_q = codebook[codes]."""
    from lgvq.lg.evaluate import RidgeStats, word_code_errors

    ridge = RidgeStats()
    table, records = train
    for i in range(0, len(records), BATCH):
        recs = records[i : i + BATCH]
        glob = torch.from_numpy(np.array(cache.global_[np.asarray(_first_rows(cache, recs))], dtype=np.float32))
        ridge.add(_quantised(table, codebook, recs).mean((2, 3)), glob)
    w_map = ridge.solve()
    table, records = test
    sq_err, pairs = 0.0, 0
    for i in range(0, len(records), BATCH):
        recs = records[i : i + BATCH]
        e, n = word_code_errors(_quantised(table, codebook, recs), cache.features(_first_rows(cache, recs)), w_map)
        sq_err, pairs = sq_err + e, pairs + n
    return sq_err / pairs if pairs else float("nan")


def random_codebook(cfg: dict[str, Any], ref: Reference, dataset: str, tokenizer: str, seed: int) -> dict[str, Measured]:
    R = cfg["results_dir"]
    tokdir = paths.tokenizer_dir(R, dataset, tokenizer, "base", seed)
    trained = np.load(paths.codebook_file(R, dataset, tokenizer, "base", seed), allow_pickle=False)
    draw_seed = eval_settings(cfg).mask_eval_seed * 7919 + seed
    codebook = random_like(trained, draw_seed)
    cache = text_cache(cfg, dataset)
    source = dataset_source(cfg, dataset)
    train, test = source.records("train"), source.records("test")
    mse = codebook_word_code_mse(codebook, cache, (CodeTable(tokdir, ("train",)), train),
                                 (CodeTable(tokdir, ("test",)), test))
    note = (f"ridge-aligned protocol (lgvq.lg.evaluate) on {tokenizer} base seed {seed}'s codes, its {trained.shape[0]}x"
            f"{trained.shape[1]} codebook replaced by N(0, {float(np.std(trained)):.3g}²) draws (seed {draw_seed}); "
            f"{len(test)} test captions, text encoder {cache.encoder_name}")
    return {"text_alignment": Measured({"word_code_MSE": mse}, {"word_code_MSE": note},
                                       labels={"text_encoder": cache.encoder_name})}
