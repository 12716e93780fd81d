"""Each switch where the harness follows the authors' code rather than the paper's text
(README, "Where this harness differs"), pinned on tiny inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lgvq.lg.evaluate import masked_word_recall
from lgvq.lg.module import LanguageGuidance
from lgvq.lg.nets import MaskedTextDecoder, QuickGELU, VisualTokenTransformer
from lgvq.text.base import TextFeatures
from lgvq.tokenizers.base import TokenizerOutput
from lgvq.tokenizers.quantizers import ClusteredVectorQuantizer, contrastive_loss
from lgvq.tokenizers.registry import build_tokenizer

TINY = dict(ch=8, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[], z_channels=8, embed_dim=4, n_embed=16)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- beta: which VQ term it weights ------------------------------------------------------------

def vq_gradients(beta_on: str) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = build_tokenizer("vqvae", {**TINY, "beta_on": beta_on}, image_size=8)
    z_e = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = model.quantizer(z_e)
    sum(model.vq_losses(TokenizerOutput(torch.zeros(2, 3, 8, 8), out)).values()).backward()
    return z_e.grad, model.quantizer.embedding.weight.grad


def test_beta_on_the_commitment_is_eq_2_and_on_the_codebook_is_tamings_legacy_quantiser():
    enc_commit, cb_commit = vq_gradients("commit")
    enc_legacy, cb_legacy = vq_gradients("codebook")
    used = cb_commit.abs().sum(1) > 0
    assert used.any()
    # Eq. 2: the encoder gets beta * 2(z_e - z_q)/n, the codebook 2(z_q - z_e)/n; legacy swaps beta.
    assert torch.allclose(enc_legacy, enc_commit / 0.25, atol=1e-7)
    assert torch.allclose(cb_legacy[used], cb_commit[used] * 0.25, atol=1e-7)


def test_an_unknown_beta_placement_is_refused():
    with pytest.raises(ValueError, match="beta_on"):
        build_tokenizer("vqgan", {**TINY, "beta_on": "encoder"}, image_size=8)


# --- f_vt and the masked-text decoder: the authors' modules ----------------------------------------

def test_parameter_counts_equal_the_authors_at_the_paper_sizes():
    # quantTransformer(grid 16, width 256, 2 layers, 1 head, output 512): per block attention
    # 4 x (256^2 + 256) + MLP (256 x 1024 + 1024 + 1024 x 256 + 256) + 2 LayerNorms = 789,760;
    # plus [CLS] 256, positions 257 x 256, ln_pre + ln_post 1,024, projection 256 x 512.
    assert n_params(VisualTokenTransformer(256, 512, 16 * 16, layers=2, heads=1)) == 1_777_664
    # Decoder(d_model 512, ffn_hidden 512, 2 layers): per layer 2 attentions x 4 x (512^2 + 512),
    # 3 LayerNorms, FFN 512 -> 512 -> 512 = 2,629,632.
    assert n_params(MaskedTextDecoder(512, 512, layers=2, heads=1, dropout=0.1)) == 5_259_264
    lg = LanguageGuidance(code_dim=256, text_width=512, grid_tokens=256, token_embeddings=torch.zeros(49408, 512),
                          gsa=1, mtp=1, ras=1, max_len=30)
    assert lg.mask_tokens.shape == (1, 30, 512)   # one learned [mask] vector per position
    assert lg.decoder.layers[0].ffn[0].out_features == 512


def test_f_vt_is_clip_style_without_dropout():
    torch.manual_seed(0)
    f = VisualTokenTransformer(8, 12, grid_tokens=4, layers=2, heads=2).train()
    z = torch.randn(3, 8, 2, 2)
    out = f(z)
    assert out.shape == (3, 5, 12)
    assert torch.equal(out, f(z))                         # no dropout: two training passes agree
    assert isinstance(f.blocks[0].mlp[1], QuickGELU) and f.blocks[0].mlp[0].out_features == 32
    x = torch.linspace(-3, 3, 7)
    assert torch.allclose(QuickGELU()(x), x * torch.sigmoid(1.702 * x))
    # ln_post then the projection: the pre-projection tokens are normalised
    h = f.ln_post(torch.randn(3, 5, 8) * 7 + 3)
    assert torch.allclose(h.mean(-1), torch.zeros(3, 5), atol=1e-5)
    with pytest.raises(ValueError, match="4 codes per image"):
        f(torch.randn(1, 8, 3, 3))


def decoder_inputs(dt: int = 8, length: int = 6):
    words = torch.randn(1, 1, dt).expand(2, length, dt).clone()   # the same feature at every position
    return words, torch.randn(2, 5, dt), torch.ones(2, length, dtype=torch.bool)


def test_the_decoder_is_post_ln_with_relu_and_dropout_and_has_no_position_embedding():
    torch.manual_seed(0)
    dec = MaskedTextDecoder(8, 8, layers=2, heads=1, dropout=0.1)
    assert isinstance(dec.layers[0].ffn[1], torch.nn.ReLU)
    words, memory, valid = decoder_inputs()
    dec.eval()
    out = dec(words, memory, valid)
    # post-LN: every layer ends in a LayerNorm, so each output token has mean 0 and variance 1
    assert torch.allclose(out.mean(-1), torch.zeros(2, 6), atol=1e-5)
    assert torch.allclose(out.var(-1, unbiased=False), torch.ones(2, 6), atol=1e-4)
    # no positional embedding: identical words at different positions decode identically
    assert torch.allclose(out[:, 0], out[:, 3], atol=1e-6)
    dec.train()
    assert not torch.equal(dec(words, memory, valid), dec(words, memory, valid))   # dropout 0.1 in training


def test_each_masked_position_gets_its_own_mask_vector():
    torch.manual_seed(0)
    lg = LanguageGuidance(code_dim=4, text_width=8, grid_tokens=4, token_embeddings=torch.randn(20, 8),
                          gsa=1, mtp=1, ras=1, max_len=6).eval()
    words, _, valid = decoder_inputs()
    text = TextFeatures(torch.zeros(2, 6, dtype=torch.long), words, valid, torch.zeros_like(valid), torch.randn(2, 8))
    masked = torch.zeros(2, 6, dtype=torch.bool)
    masked[:, 1:3] = True
    h = lg._decode(text, masked, lg.visual_tokens(torch.randn(2, 4, 2, 2)))
    assert not torch.allclose(h[:, 1], h[:, 2], atol=1e-4)   # masked slots differ only by their [mask] vectors
    assert torch.allclose(h[:, 3], h[:, 4], atol=1e-6)       # unmasked, identical words: identical output


# --- CVQ: distance, anchors, contrastive term -------------------------------------------------------

def cvq(**kw) -> ClusteredVectorQuantizer:
    q = ClusteredVectorQuantizer(3, 2, **kw).train()
    q.embedding.weight.data = torch.tensor([[1.0, 0.0], [9.0, 1.0], [-5.0, -5.0]])
    return q


def grid(points: list[list[float]]) -> torch.Tensor:
    """N 2-d features as a (1, 2, 1, N) grid."""
    return torch.tensor(points).t()[None, :, None, :]


def test_cosine_and_l2_assign_different_codes():
    z = grid([[10.0, 0.0]])
    assert cvq(distance="l2").eval()(z).codes.item() == 1      # (9, 1) is nearer in L2
    assert cvq(distance="cos").eval()(z).codes.item() == 0     # (1, 0) has the same direction


def test_closest_anchors_pull_unused_codes_onto_their_nearest_features():
    q = cvq(anchor="closest")
    feats = [[1.2, 0.1], [0.9, -0.2], [0.5, 0.5]]   # all assigned to code 0: codes 1 and 2 are dead
    q(grid(feats))
    # unused codes have alpha ~ exp(-1e-3) and land on their nearest feature; code 0 stays put
    expected = torch.tensor([[1.0, 0.0], feats[0], feats[1]])
    assert torch.allclose(q.embedding.weight, expected, atol=0.01)


def test_probrandom_anchors_are_drawn_by_similarity_from_the_global_rng():
    feats = [[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [0.1, 0.1]]

    def anchors(seed: int) -> torch.Tensor:
        q = cvq(anchor="probrandom")
        q.embedding.weight.data = torch.zeros(3, 2)             # equidistant from all four features
        torch.manual_seed(seed)
        q(grid(feats))
        return q.embedding.weight.detach().clone()

    assert torch.equal(anchors(0), anchors(0))                    # the global RNG decides: resume-exact
    draws = {tuple(row.tolist()) for s in range(12) for row in anchors(s)}
    assert len(draws) > 1                                         # not the closest feature every time
    assert all(any(abs(a - f[0]) < 0.01 and abs(b - f[1]) < 0.01 for f in feats) for a, b in draws)


def reference_contrastive(sim: torch.Tensor, k: int) -> torch.Tensor:
    """CVQ's term written per code, as a loop."""
    n, losses = sim.shape[0], []
    for c in range(sim.shape[1]):
        col = sim[:, c].sort().values
        pos = col[-max(1, n // k):].mean()
        logits = torch.cat([pos[None], col[: n // 2]]) / 0.07
        losses.append(-F.log_softmax(logits, 0)[0])
    return torch.stack(losses).mean()


def test_contrastive_term_matches_its_definition_and_moves_only_the_codebook():
    sim = torch.randn(10, 3)
    assert torch.allclose(contrastive_loss(sim, 3), reference_contrastive(sim, 3), atol=1e-5)
    q = cvq(contrastive=True)
    z = torch.randn(1, 2, 2, 3, requires_grad=True)
    out = q(z)
    out.losses["contrastive"].backward()
    assert z.grad is None or z.grad.abs().sum() == 0
    assert q.embedding.weight.grad.abs().sum() > 0
    assert "contrastive" not in cvq(contrastive=True).eval()(z).losses   # training only
    assert "contrastive" not in cvq(contrastive=False)(z).losses


def test_the_authors_cvq_is_built_from_its_config_keys():
    model = build_tokenizer("cvq", {**TINY, "disc_start": 1, "disc_ch": 8, "disc_layers": 1, "cvq_distance": "l2",
                                    "cvq_anchor": "probrandom", "cvq_contrastive": True}, image_size=8)
    q = model.quantizer
    assert (q.distance, q.anchor, q.contrastive) == ("l2", "probrandom", True)
    assert "probrandom anchors" in model.describe()["codebook"]
    with pytest.raises(ValueError, match="cvq_anchor"):
        build_tokenizer("cvq", {**TINY, "cvq_anchor": "random"}, image_size=8)


# --- masked-word recall: the paper's protocol and the leak-free one ---------------------------------

class NextTokenLeak:
    """A causal 'text encoder' whose feature at position p is the one-hot id of token p-1: it
    leaks each word into the next position, as a causal encoder's context does."""

    name, mask_id = "leaky", 9

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []

    def encode_ids(self, ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        self.seen.append(ids.clone())
        prev = torch.cat([torch.zeros_like(ids[:, :1]), ids[:, :-1]], 1)
        return F.one_hot(prev, 10).float()


class ReadsTheNextPosition:
    """An 'LG decoder' that predicts the word at p from the features at p+1 (exploits the leak)."""

    def masked_top1(self, z, text, masked):
        nxt = torch.cat([text.tokens[:, 1:], torch.zeros_like(text.tokens[:, :1])], 1)
        return nxt.argmax(-1)[masked]


def leaky_captions(global_: torch.Tensor) -> tuple[NextTokenLeak, TextFeatures]:
    """Two 5-token captions (<s> w w w </s>) encoded by a NextTokenLeak, which records what it encodes."""
    ids = torch.tensor([[0, 3, 4, 5, 1], [0, 6, 7, 8, 1]])
    valid = torch.ones_like(ids, dtype=torch.bool)
    special = torch.zeros_like(valid)
    special[:, [0, 4]] = True
    enc = NextTokenLeak()
    return enc, TextFeatures(ids, enc.encode_ids(ids, valid), valid, special, global_)


def test_the_leak_free_protocol_re_encodes_the_caption_with_the_word_masked():
    enc, text = leaky_captions(torch.zeros(2, 10))
    ids, special = text.token_ids, text.special
    z = torch.zeros(2, 1, 1, 1)
    paper, n, _ = masked_word_recall(ReadsTheNextPosition(), z, text, k=1, seed=0)
    leak_free, n_lf, _ = masked_word_recall(ReadsTheNextPosition(), z, text, k=1, seed=0, encoder=enc)
    assert paper == 1.0 and leak_free == 0.0 and n == n_lf == 2
    reencoded = enc.seen[-1]
    changed = reencoded != ids
    assert changed.sum(1).tolist() == [1, 1] and (reencoded[changed] == enc.mask_id).all()
    assert not (changed & special).any()
    # scored a caption at a time (bounded memory): the same result
    assert masked_word_recall(ReadsTheNextPosition(), z, text, k=1, seed=0, encoder=enc, batch=1)[:2] == (0.0, 2)


def leak_test_module(**weights) -> LanguageGuidance:
    torch.manual_seed(0)
    return LanguageGuidance(code_dim=4, text_width=10, grid_tokens=1, token_embeddings=torch.randn(10, 10), max_len=5,
                            **{"gsa": 1.0, "mtp": 1.0, "ras": 1.0, **weights})


def test_leak_free_training_feeds_the_decoder_the_caption_re_encoded_with_its_masked_words_masked():
    """lg.mtp_input: leak_free. The decoder's input comes from the encoder run on the masked ids (so the
    word cannot be read off a neighbour's feature); targets, L_gsa and L_ras keep the whole caption."""
    from lgvq.lg.losses import sample_mask_and_bound
    from lgvq.lg.module import reencode_masked

    enc, text = leaky_captions(torch.randn(2, 10))
    ids, valid, special = text.token_ids, text.valid, text.special
    z = torch.randn(2, 4, 1, 1)
    lg = leak_test_module().eval()  # no dropout: the two inputs are the only difference
    seen_masks = []

    def reencode(t, masked):
        seen_masks.append(masked)
        return reencode_masked(t, masked, enc)

    paper = lg(z, text, torch.Generator().manual_seed(3))
    leak_free = lg(z, text, torch.Generator().manual_seed(3), reencode=reencode)
    masked = seen_masks[0]
    # the mask the loss scores is the one the encoder saw, drawn exactly as the paper input's is
    assert torch.equal(masked, sample_mask_and_bound(valid, special, torch.Generator().manual_seed(3))[0])
    assert masked.any()
    assert torch.equal(enc.seen[-1], torch.where(masked, torch.full_like(ids, enc.mask_id), ids))
    assert leak_free["mtp"] != paper["mtp"]
    assert leak_free["gsa"] == paper["gsa"] and leak_free["ras"] == paper["ras"]


def test_the_tokenizer_job_builds_a_re_encoder_only_for_leak_free_mtp():
    from pathlib import Path
    from types import SimpleNamespace

    from lgvq.config import load_config
    from lgvq.io import ArtifactError
    from lgvq.pipeline.tokenizer import leak_free_reencoder
    from lgvq.text.registry import get_text_encoder

    enc = get_text_encoder("minilm", max_length=30)
    cache = SimpleNamespace(model_id=str(enc.model_id), width=enc.width, path="shapes/text/minilm.npz")
    cfg = load_config(Path(__file__).resolve().parent.parent / "config" / "smoke.yaml")
    assert leak_free_reencoder(cfg, leak_test_module(), "cpu", cache) is None  # the paper's input
    cfg["lg"]["mtp_input"] = "leak_free"
    assert leak_free_reencoder(cfg, None, "cpu", cache) is None
    assert leak_free_reencoder(cfg, leak_test_module(mtp=0.0), "cpu", cache) is None
    other = SimpleNamespace(model_id="clip-vit-b32", width=512, path="shapes/text/minilm.npz")
    with pytest.raises(ArtifactError, match=r"lg\.mtp_input: .*shapes/text/minilm\.npz was built by clip-vit-b32"):
        leak_free_reencoder(cfg, leak_test_module(), "cpu", other)  # features of another model: refused
    reencode = leak_free_reencoder(cfg, leak_test_module(), "cpu", cache)  # the configured (offline MiniLM) encoder
    text = enc.encode(["a red circle and a blue square"])
    masked = torch.zeros_like(text.valid)
    masked[0, 2] = True
    out = reencode(text, masked)
    expected = enc.encode_ids(torch.where(masked, torch.full_like(text.token_ids, enc.mask_id), text.token_ids), text.valid)
    assert torch.allclose(out.tokens, expected) and not torch.allclose(out.tokens, text.tokens)
    assert torch.equal(out.global_, text.global_) and torch.equal(out.token_ids, text.token_ids)


def test_the_training_step_re_encodes_each_micro_batch_outside_autocast():
    """TokenizerTask hands its `reencode` to the LG module: one re-encoding per micro-batch, of that micro-batch's
    captions, with the step's bf16 autocast off inside the frozen encoder."""
    from lgvq.lg.module import reencode_masked
    from lgvq.train.tokenizer_task import TokenizerTask

    class Recording:
        mask_id = 9

        def __init__(self) -> None:
            self.calls: list[tuple[int, bool]] = []

        def encode_ids(self, ids, valid):
            self.calls.append((len(ids), torch.is_autocast_enabled("cpu")))
            return F.one_hot(ids, 10).float()

    torch.manual_seed(0)
    model = build_tokenizer("vqvae", dict(TINY), image_size=8)
    lg = LanguageGuidance(code_dim=4, text_width=10, grid_tokens=16, token_embeddings=torch.randn(10, 10), max_len=5,
                          gsa=0.0, mtp=1.0, ras=0.0)
    enc = Recording()
    task = TokenizerTask(model, lg, lr=1e-3, betas=(0.5, 0.9), micro_batch=2, cpu_bf16="on",
                         reencode=lambda t, m: reencode_masked(t, m, enc))
    ids = torch.tensor([[0, 3, 4, 5, 1]] * 4)
    valid, special = torch.ones_like(ids, dtype=torch.bool), torch.zeros_like(ids, dtype=torch.bool)
    special[:, [0, 4]] = True
    text = TextFeatures(ids, F.one_hot(ids, 10).float(), valid, special, torch.randn(4, 10))
    task.train_step({"image": torch.rand(4, 3, 8, 8) * 2 - 1, "text": text}, 0)
    assert enc.calls == [(2, False), (2, False)]


# --- the paper profile follows the authors' code ------------------------------------------------------

def test_the_paper_profile_sets_each_switch_as_the_authors_code_does():
    from pathlib import Path

    from lgvq.config import load_config

    cfg = load_config(Path(__file__).resolve().parent.parent / "config" / "paper.yaml")
    tok = {name: entry["params"] for name, entry in cfg["tokenizers"].items()}
    assert tok["vqgan"]["beta_on"] == "codebook" and tok["cvq"]["beta_on"] == "commit"
    assert (tok["cvq"]["cvq_distance"], tok["cvq"]["cvq_anchor"], tok["cvq"]["cvq_contrastive"]) == ("l2", "probrandom", True)
    assert all(p["disc_start"] == 10000 for name, p in tok.items() if name != "vqvae")
    assert cfg["lg"] == {"layers": 2, "heads": 1, "dropout": 0.1, "mtp_input": "paper"}
    assert cfg["stage2"]["dropout"] == 0.0


def test_the_paper_profile_trains_each_head_for_the_papers_epochs_at_its_batch():
    """Appendix A.1: captioning 100 epochs at batch 60, VQA 50 at 60, grounding 100 at 30, over the training items the
    paper states (CUB: 5,994 train images x 10 captions; COCO-QA: 78,736 questions; 42,404 expressions)."""
    import math
    from pathlib import Path

    from lgvq.config import load_config
    from lgvq.settings import downstream_settings

    cfg = load_config(Path(__file__).resolve().parent.parent / "config" / "paper.yaml")
    for task, epochs, items, batch in (("captioning", 100, 5994 * 10, 60), ("vqa", 50, 78736, 60),
                                       ("grounding", 100, 42404, 30)):
        d = downstream_settings(cfg, task)
        assert (d.batch_size, d.steps) == (batch, math.ceil(epochs * items / batch)), task
