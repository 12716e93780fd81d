"""Language-guided losses on hand-built inputs, the module's gradients and switches."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lgvq.lg.evaluate import fit_ridge, masked_word_recall, retrieval
from lgvq.lg.losses import gsa_loss, mtp_loss, ras_loss, sample_mask
from lgvq.lg.module import LanguageGuidance
from lgvq.text.base import TextFeatures

B, L, D, DT, V = 4, 10, 6, 8, 50


def text(seed=0) -> TextFeatures:
    g = torch.Generator().manual_seed(seed)
    valid = torch.arange(L)[None].expand(B, L) < torch.tensor([[10], [8], [6], [7]])
    special = torch.zeros(B, L, dtype=torch.bool)
    special[:, 0] = True
    special[torch.arange(B), valid.sum(1) - 1] = True
    return TextFeatures(torch.randint(0, V, (B, L), generator=g), torch.randn(B, L, DT, generator=g), valid, special,
                        torch.randn(B, DT, generator=g))


def test_consistent_word_and_code_relations_give_zero_ras():
    t = text()
    words = t.tokens
    # vision tokens = the words themselves (each word picks its own position, cosine 1) and codes = words
    loss = ras_loss(words, words, words, t.valid)
    assert loss.item() < 1e-10
    assert ras_loss(torch.randn(B, L, DT), torch.randn(B, L, DT), words, t.valid).item() > 1e-3


def test_matched_pairs_have_lower_gsa_than_shuffled():
    g = torch.randn(B, DT)
    assert gsa_loss(g, g) < gsa_loss(g, g.roll(1, 0))


def test_mtp_is_zero_without_masked_words_and_ignores_pads():
    t = text()
    logits = torch.randn(B, L, V, requires_grad=True)
    none = torch.zeros(B, L, dtype=torch.bool)
    loss = mtp_loss(logits, t.token_ids, none, t.valid)
    assert loss.item() == 0.0 and not torch.isnan(loss)
    masked = t.valid.clone()
    pad_changed = logits.detach().clone()
    pad_changed[~t.valid] = 100.0
    assert torch.allclose(mtp_loss(logits, t.token_ids, masked, t.valid), mtp_loss(pad_changed, t.token_ids, masked, t.valid))


def test_mask_never_touches_special_or_pad_tokens_and_its_ratio_is_bounded():
    t = text()
    g = torch.Generator().manual_seed(0)
    ratios = []
    for _ in range(200):
        m = sample_mask(t.valid, t.special, g)
        assert not (m & (t.special | ~t.valid)).any()
        ratios.append(m.sum().item() / (t.valid & ~t.special).sum().item())
    assert 0.1 <= sum(ratios) / len(ratios) <= 0.3


def module(**w):
    torch.manual_seed(0)
    weights = {"gsa": 1.0, "mtp": 1.0, "ras": 1.0, **w}
    return LanguageGuidance(code_dim=D, text_width=DT, token_embeddings=torch.randn(V, DT), max_len=L,
                            grid_tokens=9, **weights)


def test_gradients_reach_codes_and_lg_parameters_never_the_token_embeddings():
    lg = module()
    z = torch.randn(B, D, 3, 3, requires_grad=True)
    terms = lg(z, text(), torch.Generator().manual_seed(0))
    assert set(terms) == {"gsa", "mtp", "ras"}
    sum(terms.values()).backward()
    assert z.grad.abs().sum() > 0
    assert lg.f_vt.blocks[0].attn.q.weight.grad.abs().sum() > 0 and lg.ras_proj[0].weight.grad.abs().sum() > 0
    assert not lg.token_embeddings.requires_grad and lg.token_embeddings.grad is None


def test_a_zero_weight_removes_the_term():
    terms = module(gsa=0.0, ras=0.0)(torch.randn(B, D, 3, 3), text(), torch.Generator().manual_seed(0))
    assert set(terms) == {"mtp"}
    assert module(gsa=0.0, mtp=0.0, ras=0.0)(torch.randn(B, D, 3, 3), text()) == {}


def test_recall_of_an_oracle_is_one():
    class Oracle:
        def masked_top1(self, z, t, masked):
            return t.token_ids[masked]

    t = text()
    rec, n, skipped = masked_word_recall(Oracle(), torch.zeros(B, D, 2, 2), t, 3, seed=0)
    assert rec == 1.0 and n + skipped == B


@torch.no_grad()
def test_masked_top1_is_the_argmax_of_the_full_logits_at_the_masked_positions_in_any_chunking():
    lg, t = module().eval(), text()
    z = torch.randn(B, D, 3, 3)
    masked = t.valid & ~t.special & (torch.rand(B, L, generator=torch.Generator().manual_seed(1)) < 0.5)
    full = lg.predict_masked(z, t, masked).argmax(-1)[masked]
    assert len(full) > 3
    for chunk in (1, 3, 256):
        assert torch.equal(lg.masked_top1(z, t, masked, chunk=chunk), full)
    assert lg.masked_top1(z, t, torch.zeros_like(masked)).numel() == 0


def test_retrieval_and_ridge_on_known_answers():
    g = torch.randn(6, DT)
    assert retrieval(g, g) == {"I2T-R@1": 1.0, "I2T-R@5": 1.0}
    x = torch.randn(40, 3)
    w = torch.randn(3, 2)
    assert torch.allclose(torch.cat([x, torch.ones(40, 1)], 1) @ fit_ridge(x, x @ w, lam=1e-8), x @ w, atol=1e-3)
