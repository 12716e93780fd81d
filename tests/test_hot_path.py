"""The tokenizer training hot path: no host-device sync between log points, code assignment in fp32
under bf16 autocast, VQCT's codebook computed once per forward."""

from __future__ import annotations

import pytest
import torch

from lgvq.lg.losses import mtp_loss, sample_mask_and_bound
from lgvq.lg.module import LanguageGuidance
from lgvq.text.base import TextFeatures
from lgvq.tokenizers.quantizers import ClusteredVectorQuantizer, VectorQuantizer
from lgvq.tokenizers.registry import build_tokenizer
from lgvq.tokenizers.vqct import TransferredCodebookQuantizer
from lgvq.train.syncs import SyncCounter
from lgvq.train.terms import TermWindow
from lgvq.train.tokenizer_task import TokenizerTask

TINY = dict(ch=8, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[], z_channels=8, embed_dim=4, n_embed=16)
B, L, DT, V = 4, 10, 12, 40


def captions(device="cpu", seed=0) -> TextFeatures:
    g = torch.Generator().manual_seed(seed)
    valid = torch.arange(L)[None].expand(B, L) < torch.tensor([[10], [8], [6], [7]])
    special = torch.zeros(B, L, dtype=torch.bool)
    special[:, 0] = True
    special[torch.arange(B), valid.sum(1) - 1] = True
    return TextFeatures(torch.randint(0, V, (B, L), generator=g), torch.randn(B, L, DT, generator=g), valid,
                        special, torch.randn(B, DT, generator=g)).to(device)


def lg_task(name: str, device="cpu", **params) -> TokenizerTask:
    torch.manual_seed(0)
    model = build_tokenizer(name, dict(TINY, **params), image_size=16)
    lg = LanguageGuidance(code_dim=4, text_width=DT, grid_tokens=64, token_embeddings=torch.randn(V, DT), gsa=1.0,
                          mtp=1.0, ras=1.0, max_len=L)
    return TokenizerTask(model, lg, lr=1e-3, betas=(0.5, 0.9), micro_batch=2, device=device)


def test_the_sync_counter_sees_what_would_make_a_gpu_wait_and_not_what_would_not():
    x = torch.arange(6.0)
    with SyncCounter() as c:
        x.sum().item(), float(x[0]), bool(x.any()), x.tolist()
        x[x > 2], torch.nonzero(x), torch.bincount(x.long()), x.unique()
    assert c.calls == {"item": 1, "__float__": 1, "__bool__": 1, "tolist": 1, "__getitem__[bool mask]": 1,
                       "nonzero": 1, "bincount": 1, "unique": 1}
    with SyncCounter() as c:
        torch.nonzero_static(x > 2, size=3), torch.zeros(6).index_add_(0, x.long(), x), x[1:3], x.argmax()
    assert c.total == 0


STEP_KINDS = {
    "cvq, probrandom anchors + contrastive": ("cvq", dict(cvq_anchor="probrandom", cvq_contrastive=True)),
    "vqgan with its discriminator on": ("vqgan", dict(disc_start=0, disc_layers=1)),
}


@pytest.mark.parametrize("kind", STEP_KINDS)
def test_tokenizer_and_lg_steps_between_log_points_make_no_host_device_sync(kind):
    name, params = STEP_KINDS[kind]
    task = lg_task(name, **params)
    batch = {"image": torch.rand(B, 3, 16, 16) * 2 - 1, "text": captions()}
    window = TermWindow()
    task.train_step(batch, 0)  # optimiser state created
    with SyncCounter() as c:
        for step in range(1, 4):  # micro-batches, L_mtp, CVQ's update, the GAN's adaptive weight
            window.add(task.train_step(batch, step), step)
    assert c.total == 0, dict(c.calls)
    with SyncCounter() as c:
        logged = window.flush()  # the log point: one transfer for the whole window
    assert c.total == 1 and {"lg_mtp", "lg_gsa", "lg_ras", "rec", "loss"} <= set(logged)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch.cuda.set_sync_debug_mode needs a CUDA device")
@pytest.mark.parametrize("kind", STEP_KINDS)
def test_on_cuda_the_same_steps_pass_with_sync_debug_mode_error(kind):
    name, params = STEP_KINDS[kind]
    task = lg_task(name, device="cuda", **params)
    batch = {"image": (torch.rand(B, 3, 16, 16) * 2 - 1).pin_memory(), "text": captions()}
    window = TermWindow()
    task.train_step(batch, 0)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(1, 4):
            window.add(task.train_step(batch, step), step)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(v == v for v in window.flush().values())


def test_the_gathered_mtp_equals_cross_entropy_over_the_boolean_selection():
    text = captions()
    g = torch.Generator().manual_seed(3)
    masked, bound = sample_mask_and_bound(text.valid, text.special, torch.Generator().manual_seed(3))
    assert torch.equal(masked, _reference_mask(text, g)) and bound >= int(masked.sum())
    torch.manual_seed(0)
    lg = LanguageGuidance(code_dim=4, text_width=DT, grid_tokens=16, token_embeddings=torch.randn(V, DT), gsa=0.0,
                          mtp=1.0, ras=0.0, max_len=L, dropout=0.0).eval()
    z_q = torch.randn(B, 4, 4, 4)
    loss = lg(z_q, text, torch.Generator().manual_seed(3))["mtp"]
    h = lg._decode(text, masked, lg.visual_tokens(z_q))
    sel = masked & text.valid
    reference = torch.nn.functional.cross_entropy(lg.logits(h[sel]), text.token_ids[sel], label_smoothing=0.1)
    assert torch.allclose(loss, reference, rtol=1e-6)
    assert mtp_loss(torch.randn(B, L, V), text.token_ids, torch.zeros_like(sel), text.valid) == 0.0


def _reference_mask(text: TextFeatures, g: torch.Generator) -> torch.Tensor:
    """The mask as drawn before the hot-path change: the same generator calls, in the same order."""
    while True:
        r = float(torch.randn((), generator=g) * 0.1 + 0.5)
        if 0.1 <= r <= 0.3:
            break
    return (torch.rand(text.valid.shape, generator=g) < r) & text.valid & ~text.special


def _features(clustered: bool, n: int = 4096, d: int = 256) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g)
    return (3.0 + 0.02 * x) if clustered else x  # around a shared mean, the distances differ in low bits


QUANTIZERS = {
    "vq": lambda: VectorQuantizer(1024, 256),
    "cvq l2": lambda: ClusteredVectorQuantizer(1024, 256, distance="l2"),
    "cvq cos": lambda: ClusteredVectorQuantizer(1024, 256, distance="cos"),
}


@pytest.mark.parametrize("clustered", [False, True], ids=["spread", "clustered"])
@pytest.mark.parametrize("kind", QUANTIZERS)
def test_codes_under_bf16_autocast_equal_the_fp32_codes(kind, clustered):
    torch.manual_seed(0)
    q = QUANTIZERS[kind]().eval()
    flat = _features(clustered)
    with torch.no_grad():
        q.embedding.weight.copy_(flat[torch.randperm(len(flat))[:1024]] + 0.01 * torch.randn(1024, 256))
        z_e = flat.view(16, 16, 16, 256).permute(0, 3, 1, 2)
        fp32 = q(z_e).codes
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = q(z_e).codes
    assert torch.equal(bf16, fp32)


def test_vqct_codebook_is_computed_once_per_forward_and_in_fp32_under_autocast():
    q = TransferredCodebookQuantizer(torch.randn(16, 12), embed_dim=4, k=3, hidden=8)
    calls = []
    q.gcn.register_forward_hook(lambda m, i, o: calls.append(o.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q(torch.randn(2, 4, 3, 3))
    assert calls == [torch.float32]


def test_cvq_probrandom_anchors_are_the_draws_multinomial_makes():
    """The anchor draw avoids multinomial's device sync but keeps its random numbers (CPU runs unchanged)."""
    q = ClusteredVectorQuantizer(64, 8, anchor="probrandom")
    flat, sim = torch.randn(500, 8), torch.randn(500, 64) * 3
    torch.manual_seed(1)
    anchors = q._anchors(flat, sim)
    torch.manual_seed(1)
    reference = flat[torch.multinomial(torch.softmax(sim.t(), dim=1), 1).squeeze(1)]
    assert torch.equal(anchors, reference)
