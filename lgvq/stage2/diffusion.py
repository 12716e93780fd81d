"""Discrete diffusion over codes in the VQ-Diffusion setting (text-to-image, Table 5).

Forward process (mask-and-replace). Codes take K + 1 states: the K codes and [MASK] (= K). At
step t a code stays with probability alpha_t + beta_t, becomes each other code with beta_t and
becomes [MASK] with gamma_t; [MASK] stays [MASK]. The cumulative products give q(x_t | x_0):
stay alpha_bar_t + beta_bar_t, any other code beta_bar_t, [MASK] gamma_bar_t. We use VQ-Diffusion's
linear schedule, alpha_bar: 1 -> 0 and gamma_bar: 0 -> 1 over T steps, so x_T is all [MASK]
(`DiffusionSchedule` checks it).

Reverse process (x0-parameterisation). A bidirectional transformer with cross-attention to the
frozen text features predicts p(x_0 | x_t, text); x_{t-1} is drawn from
    p(x_{t-1} | x_t) = sum_{x_0} q(x_{t-1} | x_t, x_0) p(x_0 | x_t),
computed in closed form (`posterior`), and at the last step x_0 from p(x_0 | x_1). In our absorbing
chain (beta_bar = 0) a visible code at any step is x_0's own, so sampling keeps it whatever the network
predicts there (`sample`). Before git 32b0d2a the last step drew every position again from p(x_0 | x_1):
a visible code survived only as far as the network had learnt to copy it (docs/config_changes.md).

Training (`stage2.diffusion_loss`) uses by default the x_0 cross-entropy over every position (VQ-Diffusion's
auxiliary loss; documented simplification: it shares the bound's optimal x_0 predictor). `vlb` trains on the
variational bound instead, in closed form for this absorbing chain: a [MASK] at step t is revealed at t-1 with
probability r_t = 1 - gamma_bar[t-1] / gamma_bar[t] (1/t here), so its KL term is -r_t log p(x_0 | x_t) and a
visible code's is 0; T r_t (the uniform draw of t undone, as VQ-Diffusion divides by p_t) times the [MASK]
positions' cross-entropy, averaged over positions, plus VQ-Diffusion's auxiliary x_0 cross-entropy at weight
`AUX_WEIGHT`. `masked` (not VQ-Diffusion's; MaskGIT's objective) is the x_0 cross-entropy over the [MASK]
positions only, averaged over the batch's [MASK]s: with beta_bar = 0 the posterior keeps every visible code
whatever the prediction there, so the visible positions' loss only teaches a copy that sampling never reads,
and a batch's mostly-masked samples (the steps that lay out the image) weigh more.

Truncation (`truncate`, `stage2.truncation_rate`): VQ-Diffusion samples with each step's p(x_0 | x_t)
cut to its most probable codes up to a cumulative probability r (its released inference uses r = 0.86;
its classifier-free variant r = 1 with guidance) -- nucleus sampling per position, applied before the
posterior, here at the [MASK] positions (the only ones our chain still decides). r = 1 leaves p(x_0 | x_t)
as predicted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DIFFUSION_LOSSES = ("x0", "vlb", "masked")
DIFFUSION_SAMPLERS = ("posterior", "purity")
AUX_WEIGHT = 5e-4  # VQ-Diffusion's auxiliary_loss_weight (its released configs)


@dataclass
class DiffusionSchedule:
    """alpha_bar, beta_bar, gamma_bar at t = 0 .. T (index t), for K codes."""

    alpha_bar: Tensor
    gamma_bar: Tensor
    n_codes: int
    _tables: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def table(self, name: str, device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
        """`alpha_bar` or `gamma_bar` on `device` in `dtype`, copied there once: a host-to-device copy each
        training step would also wait for the GPU each step."""
        key = (name, device, dtype)
        if key not in self._tables:
            self._tables[key] = getattr(self, name).to(device, dtype)
        return self._tables[key]

    def reveal_chance(self, t: Tensor) -> Tensor:
        """r_t = 1 - gamma_bar[t-1] / gamma_bar[t] (float64) for steps t >= 1: the chance that a [MASK] at step t
        is revealed at t - 1 (1/t on the linear schedule, 1 at t = 1)."""
        g = self.table("gamma_bar", t.device, torch.float64)
        return 1 - g[t - 1] / g[t]

    @classmethod
    def linear(cls, steps: int, n_codes: int) -> "DiffusionSchedule":
        if steps < 1:
            raise ValueError("diffusion needs at least one step")
        t = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
        # alpha_bar 1 -> 0 and gamma_bar 0 -> 1 (VQ-Diffusion's endpoints 0.99999 / 0.000009, made exact)
        alpha_bar, gamma_bar = 1 - t * (1 - 1e-6), t
        alpha_bar[-1] = 0.0
        return cls(alpha_bar, gamma_bar, n_codes)

    @property
    def steps(self) -> int:
        return len(self.alpha_bar) - 1

    @property
    def beta_bar(self) -> Tensor:
        return ((1 - self.alpha_bar - self.gamma_bar) / self.n_codes).clamp_min(0)

    @property
    def absorbing(self) -> bool:
        """No step replaces a code by another (beta_bar = 0, as on `linear`): a code once visible is x_0's."""
        return bool((self.beta_bar == 0).all())

    def step_params(self, t: int) -> tuple[float, float, float]:
        """alpha_t, beta_t, gamma_t of the single transition t-1 -> t (t >= 1)."""
        a = float(self.alpha_bar[t] / self.alpha_bar[t - 1]) if self.alpha_bar[t - 1] > 0 else 0.0
        g = float(1 - (1 - self.gamma_bar[t]) / (1 - self.gamma_bar[t - 1])) if self.gamma_bar[t - 1] < 1 else 1.0
        return a, max(0.0, (1 - a - g) / self.n_codes), g

    def q_sample(self, x0: Tensor, t: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x_t ~ q(x_t | x_0) for per-sample steps t (B,)."""
        K = self.n_codes
        a = self.table("alpha_bar", x0.device)[t][:, None]
        g = self.table("gamma_bar", x0.device)[t][:, None]
        u = torch.rand(x0.shape, generator=generator, device=x0.device)
        rand_code = torch.randint(0, K, x0.shape, generator=generator, device=x0.device)
        # stay with alpha_bar, [MASK] with gamma_bar, otherwise a uniform code (which may be x0 itself:
        # that is the beta_bar share of "stay")
        return torch.where(u < a, x0, torch.where(u < a + g, torch.full_like(x0, K), rand_code))

    def posterior(self, p_x0: Tensor, x_t: Tensor, t: int) -> Tensor:
        """p(x_{t-1} | x_t) over K + 1 states (B, N, K + 1), from p(x_0 | x_t) (B, N, K)."""
        K = self.n_codes
        ab, bb, gb = float(self.alpha_bar[t]), float(self.beta_bar[t]), float(self.gamma_bar[t])
        ab1, bb1, gb1 = float(self.alpha_bar[t - 1]), float(self.beta_bar[t - 1]), float(self.gamma_bar[t - 1])
        a, b, g = self.step_params(t)
        masked = x_t == K
        onehot = F.one_hot(x_t.clamp_max(K - 1), K).to(p_x0.dtype)
        # w(x0) = p(x0 | x_t) / q(x_t | x0); for a masked x_t, q = gamma_bar for every x0 (a constant)
        q_t = torch.where(masked[..., None], torch.full_like(p_x0, max(gb, 1e-30)), bb + ab * onehot)
        w = torch.where(q_t > 0, p_x0 / q_t.clamp_min(1e-30), torch.zeros_like(p_x0))
        # v(x_{t-1}) = sum_x0 q(x_{t-1} | x0) w(x0)
        total = w.sum(-1, keepdim=True)
        v = torch.cat([ab1 * w + bb1 * total, gb1 * total], -1)
        # times q(x_t | x_{t-1}) as a function of x_{t-1}
        like_code = torch.cat([b + a * onehot, torch.zeros_like(total)], -1)
        like_mask = torch.cat([torch.full_like(p_x0, g), torch.ones_like(total)], -1)
        post = v * torch.where(masked[..., None], like_mask, like_code)
        return post / post.sum(-1, keepdim=True).clamp_min(1e-30)


def truncate(p_x0: Tensor, rate: float) -> Tensor:
    """VQ-Diffusion's truncation of p(x_0 | x_t) (..., K): per position, keep the most probable codes
    whose cumulative probability stays below `rate`, and the code that crosses it (the most probable
    one always), renormalised; `rate` >= 1 returns `p_x0` unchanged."""
    if rate >= 1.0:
        return p_x0
    ordered, order = p_x0.sort(-1, descending=True)
    drop = ordered.cumsum(-1) - ordered >= rate  # the mass before this code already reaches rate
    kept = p_x0.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), 0.0)
    return kept / kept.sum(-1, keepdim=True)


class DenoiserBlock(nn.Module):
    """Self-attention over the code grid has no mask (every position sees every other: flash-eligible).
    Cross-attention masks padded text keys with a (B, L) key-padding mask, broadcast over the queries
    inside PyTorch (never a dense N x L boolean tensor); the text is short (tens of keys)."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.self_attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.time = nn.Linear(width, 2 * width)  # adaptive LayerNorm scale/shift from the step

    def forward(self, x: Tensor, temb: Tensor, text: Tensor, text_pad: Tensor) -> Tensor:
        scale, shift = self.time(temb)[:, None].chunk(2, -1)
        h = self.ln1(x) * (1 + scale) + shift
        x = x + self.self_attn(h, h, h, need_weights=False)[0]
        h = self.ln2(x)
        x = x + self.cross_attn(h, text, text, key_padding_mask=text_pad, need_weights=False)[0]
        return x + self.mlp(self.ln3(x))


class TextToCodeDiffusion(nn.Module):
    def __init__(self, n_codes: int, n_positions: int, text_dim: int, *, width: int, layers: int, heads: int,
                 steps: int, dropout: float = 0.0, loss: str = "x0") -> None:
        super().__init__()
        if loss not in DIFFUSION_LOSSES:
            raise ValueError(f"unknown diffusion loss {loss!r} ({', '.join(DIFFUSION_LOSSES)})")
        self.loss_kind = loss
        self.schedule = DiffusionSchedule.linear(steps, n_codes)
        self.n_codes, self.n_positions = n_codes, n_positions
        self.tok = nn.Embedding(n_codes + 1, width)
        self.pos = nn.Parameter(torch.randn(1, n_positions, width) * 0.02)
        self.text_proj = nn.Linear(text_dim, width)
        self.blocks = nn.ModuleList(DenoiserBlock(width, heads, dropout) for _ in range(layers))
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, n_codes)
        self.width = width

    def _time_embedding(self, t: Tensor) -> Tensor:
        half = self.width // 2
        freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device) / half)
        ang = t.float()[:, None] * freqs[None]
        return torch.cat([ang.sin(), ang.cos()], -1)

    def predict_x0(self, x_t: Tensor, t: Tensor, text_tokens: Tensor, text_valid: Tensor) -> Tensor:
        """Logits of p(x_0 | x_t, text): (B, N, K)."""
        h = self.tok(x_t) + self.pos
        temb = self._time_embedding(t)
        text = self.text_proj(text_tokens)
        for block in self.blocks:
            h = block(h, temb, text, ~text_valid)
        return self.head(self.ln(h))

    def loss(self, x0: Tensor, text_tokens: Tensor, text_valid: Tensor, generator: torch.Generator | None = None) -> Tensor:
        t = torch.randint(1, self.schedule.steps + 1, (x0.shape[0],), generator=generator, device=x0.device)
        x_t = self.schedule.q_sample(x0, t, generator)
        logits = self.predict_x0(x_t, t, text_tokens, text_valid)
        if self.loss_kind == "x0":  # the reduction of before, so the default's training is bit-for-bit unchanged
            return F.cross_entropy(logits.reshape(-1, self.n_codes), x0.reshape(-1))
        ce = F.cross_entropy(logits.reshape(-1, self.n_codes), x0.reshape(-1), reduction="none").view(x0.shape)
        hidden = x_t == self.n_codes
        if self.loss_kind == "masked":  # clamp on the device: no read of the count on the host
            return (ce * hidden).sum() / hidden.sum().clamp_min(1)
        reveal = self.schedule.reveal_chance(t).float()  # r_t per sample
        bound = (ce * hidden).mean(1) * reveal * self.schedule.steps
        return bound.mean() + AUX_WEIGHT * ce.mean()

    @torch.no_grad()
    def sample(self, text_tokens: Tensor, text_valid: Tensor, *, generator: torch.Generator | None = None,
               temperature: float = 1.0, fast: bool = False, null: tuple[Tensor, Tensor] | None = None,
               guidance: float = 1.0, truncation: float = 1.0, sampler: str = "posterior") -> Tensor:
        """Codes (B, N): from all-[MASK] at t = T down to x_0, each step's p(x_0 | x_t) truncated at
        cumulative probability `truncation` (`truncate`; 1 = none). `fast`: the denoiser under bf16 autocast on
        CUDA (the posterior and the draws stay fp32). Classifier-free guidance (`guidance` != 1, with the
        null condition's (tokens, valid) as `null`): each step's x_0 logits are null + guidance x
        (conditional - null), the two denoised as one batch of 2B. `sampler`: "posterior" draws x_{t-1} from
        p(x_{t-1} | x_t), every position on its own (VQ-Diffusion); "purity" reveals the most confident [MASK]
        positions (`_reveal_most_confident`)."""
        if sampler not in DIFFUSION_SAMPLERS:
            raise ValueError(f"unknown diffusion sampler {sampler!r} ({', '.join(DIFFUSION_SAMPLERS)})")
        if guidance != 1.0 and null is None:
            raise ValueError("guidance needs the null condition (null=(tokens, valid))")
        guided = guidance != 1.0
        if guided:
            text_tokens, text_valid = torch.cat([text_tokens, null[0]]), torch.cat([text_valid, null[1]])
        B, K = text_tokens.shape[0] // (2 if guided else 1), self.n_codes
        x = torch.full((B, self.n_positions), K, dtype=torch.long, device=text_tokens.device)
        amp = fast and x.device.type == "cuda"
        absorbing = self.schedule.absorbing
        hidden = self.n_positions  # [MASK]s per row (the purity sampler reveals the same count in every row)
        for t in range(self.schedule.steps, 0, -1):
            tt = torch.full((len(text_tokens),), t, dtype=torch.long, device=x.device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                logits = self.predict_x0(x.repeat(2, 1) if guided else x, tt, text_tokens, text_valid).float()
            if guided:
                cond, uncond = logits.chunk(2)
                logits = uncond + guidance * (cond - uncond)
            p_x0 = truncate((logits / temperature).softmax(-1), truncation)
            if absorbing:  # a visible code is x_0 itself (q keeps it): its p(x_0) is that code, so neither the last
                # step, which draws x_0 from p(x_0 | x_1), nor a truncated or underflowed prediction can change it
                p_x0 = torch.where((x == K)[..., None], p_x0, F.one_hot(x.clamp_max(K - 1), K).to(p_x0.dtype))
            if sampler == "purity":
                x, hidden = self._reveal_most_confident(x, p_x0, t, hidden, generator)
                continue
            probs = p_x0 if t == 1 else self.schedule.posterior(p_x0, x, t)
            x = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator).view(B, -1)
        return x

    def _reveal_most_confident(self, x: Tensor, p_x0: Tensor, t: int, hidden: int,
                               generator: torch.Generator | None) -> tuple[Tensor, int]:
        """One purity-ordered step (Improved VQ-Diffusion's purity prior, simplified to a ranking): as many [MASK]
        positions as the chain reveals in expectation at step t (a share `reveal_chance(t)` of them; all at
        t = 1), chosen where p(x_0 | x_t) is most confident (its largest probability), each drawn
        from p(x_0 | x_t). Visible codes stay. Every row holds the same number of [MASK]s, `hidden` (counted
        here, not read off the device: no sync per step); returns the new codes and [MASK] count."""
        K = self.n_codes
        masked = x == K
        k = min(hidden, round(hidden * float(self.schedule.reveal_chance(torch.tensor(t)))))
        if k == 0:
            return x, hidden
        draw = torch.multinomial(p_x0.reshape(-1, K), 1, generator=generator).view(x.shape)
        purity = p_x0.amax(-1).masked_fill(~masked, -1.0)
        reveal = torch.zeros_like(masked).scatter(1, purity.topk(k, dim=1).indices, True)
        return torch.where(reveal, draw, x), hidden - k
