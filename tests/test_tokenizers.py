"""Tokenizer zoo: quantiser gradients, dead-code handling, VQ-GAN's schedule, the registry."""

from __future__ import annotations

import pytest
import torch

from lgvq.config import ConfigError
from lgvq.tokenizers.quantizers import ClusteredVectorQuantizer, VectorQuantizer
from lgvq.tokenizers import BUILTIN, BUILTIN_NEEDS
from lgvq.tokenizers.needs import Needs
from lgvq.tokenizers.registry import build_tokenizer, list_tokenizers, tokenizer_class, tokenizer_needs
from lgvq.train.tokenizer_task import TokenizerTask

TINY = dict(ch=8, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[8], z_channels=8, embed_dim=4, n_embed=16)


def words(n=16):
    return lambda n_words: torch.randn(n, 12, generator=torch.Generator().manual_seed(0))


def test_nearest_neighbour_assignment_on_hand_made_vectors():
    vq = VectorQuantizer(3, 2)
    vq.embedding.weight.data = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 5.0]])
    z = torch.tensor([[0.9, 0.1], [0.1, 4.0], [0.2, -0.1]]).t().reshape(1, 2, 1, 3)
    assert vq(z).codes.flatten().tolist() == [1, 2, 0]


def test_straight_through_and_loss_terms_route_gradients():
    vq = VectorQuantizer(8, 4)
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = vq(z)
    out.z_q.sum().backward(retain_graph=True)
    assert torch.allclose(z.grad, torch.ones_like(z))  # identity gradient through the quantiser
    z.grad = None
    out.losses["codebook"].backward(retain_graph=True)
    assert z.grad is None or z.grad.abs().sum() == 0      # codebook term does not move the encoder
    assert vq.embedding.weight.grad.abs().sum() > 0
    vq.embedding.weight.grad = None
    out.losses["commit"].backward()
    assert z.grad.abs().sum() > 0 and (vq.embedding.weight.grad is None or vq.embedding.weight.grad.abs().sum() == 0)


def test_cvq_pulls_dead_codes_onto_encoder_features_and_leaves_used_codes():
    q = ClusteredVectorQuantizer(6, 2, decay=0.5)
    q.embedding.weight.data = torch.tensor([[0.0, 0.0], [10.0, 10.0], [20, 20], [30, 30], [40, 40], [50, 50.0]])
    before = q.embedding.weight.detach().clone()
    z = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(0)) * 0.1  # all features near code 0
    q.train()
    q(z)
    after = q.embedding.weight.detach().clone()
    assert torch.allclose(after[0], before[0], atol=1e-6)      # the code in use stays where it is
    feats = z.permute(0, 2, 3, 1).reshape(-1, 2)
    for k in range(1, 6):                                        # dead codes land on encoder features
        assert (feats - after[k]).norm(dim=1).min() < 1e-2 * (feats - before[k]).norm(dim=1).min()
    assert q(z).codes.unique().numel() > 1                       # and now take part in the assignment
    q.eval()
    frozen = q.embedding.weight.detach().clone()
    q(z * 100)
    assert torch.equal(q.embedding.weight, frozen)               # no maintenance at evaluation


@pytest.mark.parametrize("name", ["vqvae", "vqgan", "cvq", "vqct"])
def test_every_registered_tokenizer_trains_and_round_trips_codes(name):
    torch.manual_seed(0)
    params = dict(TINY) if name == "vqvae" else dict(TINY, disc_start=3, disc_ch=8, disc_layers=1)
    model = build_tokenizer(name, params, image_size=16, word_embeddings=words())
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    out = model(x)
    assert out.x_rec.shape == x.shape and out.codes.shape == (4, 8, 8) and out.z_q.shape == (4, 4, 8, 8)
    assert model.codebook().shape == (16, 4)
    assert model.decode_codes(out.codes).shape == x.shape
    task = TokenizerTask(model, None, lr=2e-3, betas=(0.5, 0.9))
    first = task.train_step({"image": x}, 0)
    for step in range(1, 30):
        last = task.train_step({"image": x}, step)
    assert last["rec"] < first["rec"]
    if name != "vqvae":
        assert "gan" not in first and "disc" not in first   # before disc_start: no adversarial terms
        assert "gan" in last and "disc" in last and torch.isfinite(torch.tensor(last["gan"]))
    assert "perceptual" not in first or name == "vqvae"
    if name != "vqvae":
        assert model.describe()["perceptual"] == "off (no local VGG weights)"


@pytest.mark.parametrize("name", ["vqvae", "vqgan", "cvq", "vqct", "fsq"])
def test_encoding_skips_the_decoder_and_gives_the_forward_passes_codes_and_latents(name, monkeypatch):
    torch.manual_seed(0)
    params = dict(TINY) if name == "vqvae" else dict(TINY, disc_start=3, disc_ch=8, disc_layers=1)
    if name == "fsq":
        params = {k: v for k, v in TINY.items() if k != "n_embed"} | {"levels": [4, 4]}
    model = build_tokenizer(name, params, image_size=16, word_embeddings=words()).eval()
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        expected = model(x).codes
        monkeypatch.setattr(model, "decode", lambda z: pytest.fail("encode_codes ran the decoder"))
        assert torch.equal(model.encode_codes(x), expected)
        monkeypatch.undo()
        z_q = model(x).z_q
        monkeypatch.setattr(model, "decode", lambda z: pytest.fail("encode_latents ran the decoder"))
        assert torch.equal(model.encode_latents(x), z_q)


def test_registry_errors_name_the_problem():
    assert set(list_tokenizers()) >= {"vqvae", "vqgan", "cvq", "vqct"}
    with pytest.raises(ConfigError, match="unknown tokenizer 'nope'"):
        build_tokenizer("nope", {}, image_size=16)
    with pytest.raises(ConfigError, match="chanels"):
        build_tokenizer("vqvae", dict(TINY, chanels=3), image_size=16)
    with pytest.raises(ConfigError, match="word embeddings"):
        build_tokenizer("vqct", TINY, image_size=16)
    with pytest.raises(Exception, match="perceptual_weights"):
        build_tokenizer("vqgan", dict(TINY, perceptual_weights="/no/such/vgg.pth"), image_size=16)


def test_gradient_accumulation_matches_the_full_batch():
    torch.manual_seed(0)
    a = build_tokenizer("vqvae", TINY, image_size=16)
    b = build_tokenizer("vqvae", TINY, image_size=16)
    b.load_state_dict(a.state_dict())
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    TokenizerTask(a, None, lr=1e-3, betas=(0.5, 0.9)).train_step({"image": x}, 0)
    TokenizerTask(b, None, lr=1e-3, betas=(0.5, 0.9), micro_batch=2).train_step({"image": x}, 0)
    # compare gradients (Adam's first step is ~lr * sign(grad), which hides nothing but amplifies round-off)
    for p, q in zip(a.parameters(), b.parameters()):
        if p.grad is not None:
            assert torch.allclose(p.grad, q.grad, rtol=1e-3, atol=1e-6)


def test_fsq_from_an_external_library_plugs_into_the_same_interface():
    """vector-quantize-pytorch's FSQ behind our interface: implicit codebook, exact code round trip."""
    torch.manual_seed(0)
    params = {k: v for k, v in TINY.items() if k != "n_embed"}
    model = build_tokenizer("fsq", dict(params, levels=[4, 3, 3]), image_size=16)
    assert model.codebook_size == 36 and model.codebook().shape == (36, 4)
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    out = model(x)
    assert out.codes.shape == (4, 8, 8) and int(out.codes.max()) < 36
    # decoding the codes gives exactly what the forward pass decoded (same quantised features)
    assert torch.allclose(model.decode_codes(out.codes), out.x_rec, atol=1e-5)
    assert torch.allclose(model.codebook()[out.codes].permute(0, 3, 1, 2), out.z_q, atol=1e-5)
    task = TokenizerTask(model, None, lr=2e-3, betas=(0.5, 0.9))
    first = task.train_step({"image": x}, 0)
    for step in range(1, 30):
        last = task.train_step({"image": x}, step)
    assert set(first) - {"loss"} == {"rec"} and last["rec"] < first["rec"]  # "loss": the logged total
    with pytest.raises(ValueError, match="n_embed"):
        build_tokenizer("fsq", TINY, image_size=16)


def test_the_gpu_fast_path_never_changes_cpu_training():
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    weights = []
    for fast in (True, False):
        torch.manual_seed(0)
        model = build_tokenizer("vqvae", TINY, image_size=16)
        task = TokenizerTask(model, None, lr=2e-3, betas=(0.5, 0.9), fast_path=fast)
        assert not task.fast and not task.autocast  # CPU: fp32 eager, whatever the flag
        for step in range(3):
            task.train_step({"image": x}, step)
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


@pytest.mark.slow  # compiles a tokenizer
def test_torch_compile_computes_the_same_step_within_rounding_and_keeps_plain_checkpoint_keys():
    # One step from the same weights, adversarial terms on (disc_start 0): later steps may flip a
    # nearest-code choice on a rounding difference, so only the first step is compared exactly.
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    runs = []
    for compiled in (False, True):
        torch.manual_seed(0)
        model = build_tokenizer("vqgan", {**TINY, "disc_start": 0, "disc_ch": 8, "disc_layers": 1}, image_size=16)
        task = TokenizerTask(model, None, lr=1e-4, betas=(0.5, 0.9), compile=compiled)
        runs.append((task.train_step({"image": x}, 0), model.state_dict()))
    (eager_log, eager_w), (comp_log, comp_w) = runs
    assert {"gan", "disc"} <= set(eager_log) and eager_log.keys() == comp_log.keys()
    assert all(abs(eager_log[k] - comp_log[k]) <= 1e-4 * (1 + abs(eager_log[k])) for k in eager_log), (eager_log, comp_log)
    assert set(comp_w) == set(eager_w) and not any("_orig_mod" in k for k in comp_w)
    assert all(torch.allclose(eager_w[k].float(), comp_w[k].float(), atol=5e-4) for k in eager_w)


def test_the_builtins_needs_table_is_what_each_class_declares():
    # The DAG reads the table (torch-free); the class is the declaration it must mirror.
    assert set(BUILTIN_NEEDS) <= set(BUILTIN)
    for name in BUILTIN:
        assert tokenizer_needs(name) == tokenizer_class(name).needs, f"BUILTIN_NEEDS[{name!r}] != its class's needs"
    assert tokenizer_class("vqct").needs == Needs(word_embeddings=True) and tokenizer_class("vqgan").needs == Needs()
