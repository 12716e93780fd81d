"""Second stage on codes: the GPT with its key/value cache and the discrete diffusion."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lgvq.downstream.task import HeadTask
from lgvq.stage2.diffusion import DiffusionSchedule, TextToCodeDiffusion, truncate
from lgvq.stage2.gpt import CodeGPT, sample_logits

K, N = 12, 9


def gpt(n_prefix=0, seed=0):
    torch.manual_seed(seed)
    return CodeGPT(K, N, width=32, layers=2, heads=4, n_prefix=n_prefix).eval()


def test_future_codes_cannot_change_the_logits_of_earlier_positions():
    m = gpt(n_prefix=2)
    prefix = torch.randn(1, 2, 32)
    a = torch.randint(0, K, (1, N), generator=torch.Generator().manual_seed(1))
    b = a.clone()
    b[0, 5:] = (b[0, 5:] + 1) % K
    la, lb = m.logits_of(a, prefix), m.logits_of(b, prefix)
    # position i's logits predict code i from codes < i: positions 0..5 must not move
    assert torch.allclose(la[:, :6], lb[:, :6], atol=1e-6)
    assert not torch.allclose(la[:, 6:], lb[:, 6:], atol=1e-4)


@pytest.mark.parametrize("n_prefix", [0, 3])
def test_kv_cached_sampling_equals_uncached_sampling(n_prefix):
    m = gpt(n_prefix=n_prefix)
    prefix = torch.randn(4, n_prefix, 32) if n_prefix else None
    cached = m.sample(4, prefix=prefix, generator=torch.Generator().manual_seed(7), use_cache=True, top_k=8)
    plain = m.sample(4, prefix=prefix, generator=torch.Generator().manual_seed(7), use_cache=False, top_k=8)
    assert cached.shape == (4, N) and torch.equal(cached, plain)


def reference_decode(m, n, prefix, given, generator, **kw):
    """The definition of sampling, written without the model's sampler: re-run the whole sequence for every
    token and draw the next code from the logits at its last position."""
    seq = given.clone() if given is not None else torch.zeros(n, 0, dtype=torch.long)
    while seq.shape[1] < m.n_positions:
        x = m.tok(torch.cat([torch.full((n, 1), m.sos), seq], 1))
        logits = m(torch.cat([prefix, x], 1) if prefix is not None else x)
        seq = torch.cat([seq, sample_logits(logits[:, -1], generator=generator, **kw)[:, None]], 1)
    return seq


@pytest.mark.parametrize("n_prefix,t0", [(0, 0), (3, 0), (3, 4)])
@pytest.mark.parametrize("draw", [dict(temperature=0), dict(temperature=1.0), dict(temperature=0.8, top_k=6, top_p=0.9)])
def test_static_kv_cache_sampling_equals_an_uncached_reference_decode(n_prefix, t0, draw):
    m = gpt(n_prefix=n_prefix)
    prefix = torch.randn(4, n_prefix, 32, generator=torch.Generator().manual_seed(5)) if n_prefix else None
    given = torch.randint(0, K, (4, t0), generator=torch.Generator().manual_seed(6)) if t0 else None
    ref = reference_decode(m, 4, prefix, given, torch.Generator().manual_seed(11), **draw)
    for use_cache in (True, False):
        got = m.sample(4, prefix=prefix, given=given, generator=torch.Generator().manual_seed(11), use_cache=use_cache,
                       **draw)
        assert torch.equal(got, ref), f"use_cache={use_cache}"


def test_the_kv_cache_is_allocated_once_and_refuses_positions_past_its_end():
    from lgvq.stage2.gpt import StaticKVCache

    cache = StaticKVCache(layers=1, capacity=4)
    k = torch.randn(2, 3, 1, 5)
    cache.write(0, 0, k, k)
    buffer = cache.k[0].data_ptr()
    for pos in (1, 2, 3):
        keys, _ = cache.write(0, pos, k + pos, k + pos)
        assert keys.shape == (2, 3, pos + 1, 5) and torch.equal(keys[:, :, pos : pos + 1], k + pos)
    assert cache.k[0].data_ptr() == buffer  # filled in place, never re-allocated per token
    with pytest.raises(ValueError, match="holds 4 positions; position 4"):
        cache.write(0, 4, k, k)


def test_training_and_prompts_use_is_causal_attention_without_a_mask(monkeypatch):
    import lgvq.stage2.gpt as gpt_module

    calls = []
    real = gpt_module.F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, is_causal=False, **kw):
        calls.append((q.shape[2], k.shape[2], attn_mask, is_causal))
        return real(q, k, v, attn_mask=attn_mask, is_causal=is_causal, **kw)

    monkeypatch.setattr(gpt_module.F, "scaled_dot_product_attention", spy)
    m = gpt(n_prefix=2)
    m.loss(torch.randint(0, K, (2, N)), torch.randn(2, 2, 32))
    assert calls and all(mask is None and causal for _, _, mask, causal in calls)  # one causal sequence, prefix too
    calls.clear()
    m.sample(2, prefix=torch.randn(2, 2, 32), generator=torch.Generator().manual_seed(0))
    prompt, steps = calls[:2], calls[2:]
    assert all(mask is None and causal and t == s == 3 for t, s, mask, causal in prompt)  # prefix + <sos>
    # one new token against the cache of every earlier position: neither a mask nor is_causal
    assert len(steps) == 2 * (N - 1) and all(t == 1 and mask is None and not causal for t, _, mask, causal in steps)
    assert [s for _, s, _, _ in steps[::2]] == list(range(4, 3 + N))


def test_the_gpu_fast_path_never_changes_a_cpu_heads_training():
    weights = []
    for fast in (True, False):
        m = gpt()
        task = HeadTask(m, lambda m, b: {"ce": m.loss(b)}, lr=1e-3, fast_path=fast)
        assert not task.execution.fast and task.execution.record()["precision"] == "fp32"
        assert "fused" not in task.opt.defaults or not task.opt.defaults["fused"]
        for step in range(3):
            task.train_step(torch.randint(0, K, (4, N), generator=torch.Generator().manual_seed(step)), step)
        weights.append(m.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_completion_keeps_the_given_codes_bit_exact():
    m = gpt()
    given = torch.randint(0, K, (3, 4), generator=torch.Generator().manual_seed(2))
    out = m.sample(3, given=given, generator=torch.Generator().manual_seed(3))
    assert out.shape == (3, N) and torch.equal(out[:, :4], given)


def test_top_k_and_top_p_restrict_the_support():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(400, 1)
    g = torch.Generator().manual_seed(0)
    assert set(sample_logits(logits, top_k=2, generator=g).tolist()) == {0, 1}
    assert set(sample_logits(logits, top_p=0.7, generator=g).tolist()) == {0, 1}  # 0.5 < 0.7 <= 0.8
    assert set(sample_logits(logits, top_p=0.5, generator=g).tolist()) == {0}
    assert sample_logits(logits[:1], temperature=0).tolist() == [0]


def overfit(model, loss, steps, lr=3e-3):
    task = HeadTask(model, lambda m, _: loss(m), lr=lr, weight_decay=0.0)
    model.train()
    for step in range(steps):
        task.train_step(None, step)
    return model.eval()


def test_gpt_overfit_on_one_sequence_reproduces_it():
    target = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6, 5]])
    m = overfit(gpt(), lambda m: {"ce": m.loss(target)}, steps=80)
    assert torch.equal(m.sample(2, temperature=1e-3, generator=torch.Generator().manual_seed(0)), target.repeat(2, 1))


# --- discrete diffusion ---------------------------------------------------------------------------

def test_corruption_is_identity_at_step_zero_and_all_mask_at_the_last_step():
    s = DiffusionSchedule.linear(10, K)
    x0 = torch.randint(0, K, (64, N), generator=torch.Generator().manual_seed(0))
    assert torch.equal(s.q_sample(x0, torch.zeros(64, dtype=torch.long)), x0)
    assert (s.q_sample(x0, torch.full((64,), 10)) == K).all()
    mid = s.q_sample(x0, torch.full((64,), 5), torch.Generator().manual_seed(1))
    assert 0.3 < float((mid == K).float().mean()) < 0.7  # gamma_bar(5/10) = 0.5
    assert float(s.gamma_bar[-1]) == 1.0 and float(s.alpha_bar[-1]) == 0.0
    # the tables a training step reads are copied to the device once, not every step
    assert s.table("alpha_bar", x0.device) is s.table("alpha_bar", x0.device)
    assert s.reveal_chance(torch.arange(1, 11)).tolist() == pytest.approx([1 / t for t in range(1, 11)])


def _transition(s: DiffusionSchedule, t: int) -> np.ndarray:
    """Explicit (K+1)x(K+1) one-step matrix Q[i, j] = q(x_t = j | x_{t-1} = i)."""
    a, b, g = s.step_params(t)
    Q = np.full((K + 1, K + 1), b)
    np.fill_diagonal(Q, a + b)
    Q[:, K] = g
    Q[K] = 0
    Q[K, K] = 1
    return Q


def test_posterior_matches_the_brute_force_bayes_rule():
    s = DiffusionSchedule.linear(6, K)
    rng = np.random.default_rng(0)
    p_x0 = torch.as_tensor(rng.dirichlet(np.ones(K), size=(1, 2)))  # (1, 2 positions, K)
    x_t = torch.tensor([[4, K]])  # one unmasked, one masked position
    for t in (2, 4, 5):  # at t = T an unmasked x_t is impossible
        post = s.posterior(p_x0, x_t, t).numpy()
        Qbar = np.linalg.multi_dot([_transition(s, u) for u in range(1, t)]) if t > 2 else _transition(s, 1)
        Qt = _transition(s, t)
        for n in range(2):
            j = int(x_t[0, n])
            # p(x_{t-1} | x_t) = sum_x0 q(x_t | x_{t-1}) q(x_{t-1} | x0) p(x0) / q(x_t | x0)
            q_t_given_x0 = (Qbar @ Qt)[:K, j]
            brute = sum(Qt[:, j] * Qbar[x0] * p_x0[0, n, x0].item() / q_t_given_x0[x0]
                        for x0 in range(K) if q_t_given_x0[x0] > 0)
            brute = brute / brute.sum()
            assert post[0, n] == pytest.approx(brute, abs=1e-6), (t, n)


def test_diffusion_overfit_on_one_sequence_reproduces_it():
    torch.manual_seed(0)
    target = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6, 5]])
    text, valid = torch.randn(1, 4, 8), torch.ones(1, 4, dtype=torch.bool)
    m = TextToCodeDiffusion(K, N, 8, width=32, layers=2, heads=4, steps=4)
    g = torch.Generator().manual_seed(0)
    m = overfit(m, lambda m: {"ce": m.loss(target.repeat(8, 1), text.repeat(8, 1, 1), valid.repeat(8, 1), g)}, steps=150)
    out = m.sample(text.repeat(2, 1, 1), valid.repeat(2, 1), generator=torch.Generator().manual_seed(1), temperature=0.1)
    assert torch.equal(out, target.repeat(2, 1))


def test_truncation_keeps_the_most_probable_codes_up_to_the_rate_and_the_one_that_crosses_it():
    p = torch.tensor([[0.05, 0.5, 0.3, 0.15], [0.9, 0.04, 0.03, 0.03]])
    cut = truncate(p, 0.86)  # row 0: 0.5 + 0.3 = 0.8 < 0.86, so 0.15 (crossing it) stays and 0.05 goes
    assert torch.allclose(cut[0], torch.tensor([0.0, 0.5, 0.3, 0.15]) / 0.95)
    assert torch.equal(cut[1], torch.tensor([1.0, 0.0, 0.0, 0.0]))  # the most probable code alone already crosses
    assert truncate(p, 1.0) is p  # 1: VQ-Diffusion's classifier-free setting, nothing cut


def test_truncated_sampling_keeps_visible_codes_and_draws_masked_ones_from_the_nucleus(monkeypatch):
    """Our chain never changes a visible code (beta_bar = 0): truncating a visible position's p(x_0) could
    drop x_t itself and leave its posterior with no mass (it did: multinomial on zeros), so only [MASK]
    positions are cut."""
    import lgvq.stage2.diffusion as diffusion

    torch.manual_seed(0)
    model = TextToCodeDiffusion(K, N, 8, width=16, layers=1, heads=2, steps=6).eval()
    text, valid = torch.randn(16, 4, 8), torch.ones(16, 4, dtype=torch.bool)
    seen = []
    real = diffusion.truncate
    monkeypatch.setattr(diffusion, "truncate", lambda p, r: seen.append(r) or real(p, r))
    out = model.sample(text, valid, generator=torch.Generator().manual_seed(0), truncation=0.5)
    assert seen == [0.5] * 6 and out.shape == (16, N) and int(out.max()) < K  # every step, no [MASK] left
    # at rate -> 0 each masked position keeps only its most probable code: with one step, x_0 = argmax
    one = TextToCodeDiffusion(K, N, 8, width=16, layers=1, heads=2, steps=1).eval()
    with torch.no_grad():
        best = one.predict_x0(torch.full((16, N), K), torch.ones(16, dtype=torch.long), text, valid).argmax(-1)
    assert torch.equal(one.sample(text, valid, generator=torch.Generator().manual_seed(3), truncation=1e-6), best)


def test_the_purity_sampler_reveals_the_most_confident_masked_positions_and_keeps_visible_codes():
    m = TextToCodeDiffusion(4, 6, 8, width=16, layers=1, heads=2, steps=4).eval()
    x = torch.tensor([[4, 4, 2, 4, 4, 4]])  # five [MASK]s (K = 4), position 2 visible
    p = torch.full((1, 6, 4), 0.25)
    p[0, 3] = torch.tensor([0.0, 0.0, 0.0, 1.0])  # the most confident masked position: code 3 for sure
    p[0, 2] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # confident, but visible: stays 2
    # at t = 4 of 4 (linear gamma_bar) the chain reveals 1 - 3/4 of the masked positions: round(5 / 4) = 1
    out, hidden = m._reveal_most_confident(x, p, 4, 5, torch.Generator().manual_seed(0))
    assert out.tolist() == [[4, 4, 2, 3, 4, 4]] and hidden == 4
    last, hidden = m._reveal_most_confident(out, torch.full((1, 6, 4), 0.25), 1, 4, torch.Generator().manual_seed(0))
    assert hidden == 0
    assert int(last.max()) < 4 and last[0, 2] == 2 and last[0, 3] == 3  # t = 1: every [MASK] revealed, no other
    text, valid = torch.randn(3, 2, 8), torch.ones(3, 2, dtype=torch.bool)
    codes = m.sample(text, valid, generator=torch.Generator().manual_seed(1), sampler="purity")
    assert codes.shape == (3, 6) and int(codes.max()) < 4
    with pytest.raises(ValueError, match="unknown diffusion sampler"):
        m.sample(text, valid, sampler="maskgit")


def _loss_and_its_parts(loss: str):
    """A 5-step diffusion trained with `loss`: its loss on one batch, and that batch's x_t, t and per-position
    x_0 cross-entropy, drawn with the generator the loss draws them with."""
    torch.manual_seed(0)
    m = TextToCodeDiffusion(K, N, 8, width=16, layers=1, heads=2, steps=5, loss=loss)
    x0, text, valid = torch.randint(0, K, (6, N)), torch.randn(6, 3, 8), torch.ones(6, 3, dtype=torch.bool)
    g = torch.Generator().manual_seed(4)
    t = torch.randint(1, 6, (6,), generator=g)
    x_t = m.schedule.q_sample(x0, t, g)
    with torch.no_grad():
        ce = torch.nn.functional.cross_entropy(m.predict_x0(x_t, t, text, valid).transpose(1, 2), x0, reduction="none")
        value = m.loss(x0, text, valid, torch.Generator().manual_seed(4))
    masked = x_t == K
    assert 0 < int(masked.sum()) < masked.numel()  # both kinds of position were drawn
    return value, masked, t, ce


def test_the_variational_bound_weights_masked_positions_by_their_reveal_chance_and_ignores_visible_ones():
    """stage2.diffusion_loss: vlb. In the absorbing chain a [MASK] at step t is revealed at t - 1 with probability
    r_t = 1/t (linear gamma_bar = t/T), so its KL term is -r_t log p(x_0); T r_t undoes the uniform draw of t."""
    loss, masked, t, ce = _loss_and_its_parts("vlb")
    assert torch.allclose(loss, ((ce * masked).mean(1) * 5 / t).mean() + 5e-4 * ce.mean())
    with pytest.raises(ValueError, match="unknown diffusion loss"):
        TextToCodeDiffusion(K, N, 8, width=16, layers=1, heads=2, steps=5, loss="elbo")


def test_sampling_keeps_every_code_once_revealed_even_where_the_last_step_predicts_another():
    """The chain is absorbing (beta_bar = 0): a visible code is x_0's own. The last step draws x_0 from p(x_0 | x_1)
    at the [MASK] positions only; drawn everywhere (before the fix), the codes revealed earlier were redrawn from a
    prediction that a [MASK]-only loss never trains -- and an x0-trained one copies only as well as it learnt to."""
    m = TextToCodeDiffusion(K, N, 8, width=16, layers=1, heads=2, steps=2)
    assert m.schedule.absorbing

    def certain(x_t, t, text, valid):  # code 1 at step 2, code 2 at the last step, everywhere
        return torch.nn.functional.one_hot(torch.where(t == 2, 1, 2), K).float()[:, None].expand(-1, N, -1) * 50

    m.predict_x0 = certain
    text, valid = torch.randn(8, 3, 8), torch.ones(8, 3, dtype=torch.bool)
    for truncation in (1.0, 0.86):
        codes = m.sample(text, valid, generator=torch.Generator().manual_seed(0), truncation=truncation)
        assert set(codes.unique().tolist()) == {1, 2}  # revealed at step 2 and kept; the rest drawn at the last


def test_the_masked_loss_averages_the_cross_entropy_over_the_batch_masks_and_ignores_visible_positions():
    """stage2.diffusion_loss: masked (MaskGIT's objective): the visible codes' predictions never reach the
    posterior (beta_bar = 0), so only the [MASK] positions are scored, each [MASK] of the batch weighing the same."""
    loss, masked, _, ce = _loss_and_its_parts("masked")
    assert torch.allclose(loss, ce[masked].mean())
    assert not torch.allclose(loss, ce.mean())


def test_label_map_vq_learns_to_reconstruct_label_maps_and_encodes_to_the_code_grid():
    from lgvq.stage2.labelmap_vq import LabelMapVQ

    g = torch.Generator().manual_seed(0)
    maps = torch.zeros(6, 16, 16, dtype=torch.long)
    for i in range(6):  # one rectangle of class 1 + i % 3 per map
        x, y = torch.randint(0, 8, (2,), generator=g).tolist()
        maps[i, y : y + 8, x : x + 8] = 1 + i % 3
    torch.manual_seed(0)
    m = LabelMapVQ(4, 16, 4, ch=16, n_embed=32, embed_dim=16)
    m = overfit(m, lambda m: m.loss(maps), steps=150)
    assert m.encode(maps).shape == (6, 4, 4)
    assert float((m.reconstruct(maps) == maps).float().mean()) > 0.9
    with pytest.raises(ValueError, match="power of two"):
        LabelMapVQ(4, 16, 5)


def test_the_label_map_vq_width_retrains_only_the_label_map_vq_and_is_read_back_from_its_checkpoint(tmp_path):
    from pathlib import Path

    from lgvq.config import load_config
    from lgvq.io import atomic_torch_save
    from lgvq.pipeline import jobs, paths
    from lgvq.pipeline.stage2 import load_labelmap_vq
    from lgvq.stage2.labelmap_vq import LabelMapVQ

    cfg = load_config(Path(__file__).resolve().parent.parent / "config" / "smoke.yaml")
    cfg["results_dir"] = str(tmp_path)
    narrow = {**cfg, "stage2": {**cfg["stage2"], "labelmap_ch": 8}}
    assert "labelmap_ch" not in jobs.labelmap_vq(cfg, "shapes")["stage2"]  # 32: the hash of before
    assert jobs.labelmap_vq(narrow, "shapes")["stage2"]["labelmap_ch"] == 8
    for task in ("semantic", "t2i_ar", "t2i_diffusion", "completion", "unconditional"):  # no checkpoint holds it
        assert jobs.stage2_job(narrow, task, "shapes", "vqgan", "base", 0) == jobs.stage2_job(cfg, task, "shapes", "vqgan", "base", 0)
    # a model.pt records its width; one written before the key (no "ch") was 32 wide
    path = paths.labelmap_vq_model(tmp_path, "shapes")
    path.parent.mkdir(parents=True)
    for ch, meta_ch in ((8, {"ch": 8}), (32, {})):
        model = LabelMapVQ(4, 16, 4, ch=ch, n_embed=16)
        atomic_torch_save(path, {"state": model.state_dict(),
                                 "meta": {"n_classes": 4, "image_size": 16, "grid": 4, "n_embed": 16, **meta_ch}})
        loaded, _ = load_labelmap_vq(cfg, "shapes")
        assert loaded.encoder.conv_in.out_channels == ch
