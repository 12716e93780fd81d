"""A tokenizer trained with +LG and an adversarial loss (the authors' CVQ, whose anchors are random
draws), interrupted and resumed, ends with the same weights as an uninterrupted run (CPU)."""

from __future__ import annotations

import torch

from lgvq.lg.module import LanguageGuidance
from lgvq.text.base import TextFeatures
from lgvq.tokenizers.registry import build_tokenizer
from lgvq.train.loop import epoch_order, train_loop
from lgvq.train.tokenizer_task import TokenizerTask

G = torch.Generator().manual_seed(0)
IMAGES = torch.rand(12, 3, 16, 16, generator=G) * 2 - 1
TEXT = TextFeatures(torch.randint(0, 40, (12, 8), generator=G), torch.randn(12, 8, 12, generator=G),
                    torch.ones(12, 8, dtype=torch.bool), torch.zeros(12, 8, dtype=torch.bool), torch.randn(12, 12, generator=G))
TINY = dict(ch=8, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[], z_channels=8, embed_dim=4, n_embed=16,
            disc_start=3, disc_ch=8, disc_layers=1,
            cvq_anchor="probrandom", cvq_contrastive=True)  # the authors' CVQ: anchors drawn from the RNG


def batches(epoch):
    order = epoch_order(12, seed=1, epoch=epoch)
    return [{"image": IMAGES[order[i:i + 4]], "text": TEXT[order[i:i + 4]]} for i in range(0, 12, 4)]


def run(out, **kw) -> TokenizerTask:
    torch.manual_seed(0)
    model = build_tokenizer("cvq", TINY, image_size=16)
    lg = LanguageGuidance(code_dim=4, text_width=12, token_embeddings=torch.randn(40, 12), gsa=1.0, mtp=1.0, ras=1.0,
                          max_len=8, grid_tokens=64)
    task = TokenizerTask(model, lg, lr=1e-3, betas=(0.5, 0.9))
    train_loop(task, batches, out_dir=out, max_steps=8, seed=5, config_hash="h", ckpt_every=2, log_every=1, **kw)
    return task


def test_resumed_tokenizer_matches_uninterrupted(tmp_path):
    ref = run(tmp_path / "ref")
    run(tmp_path / "cut", stop_after=5)
    resumed = run(tmp_path / "cut")
    for name, mod in ref.modules().items():
        for (k, a), b in zip(mod.state_dict().items(), resumed.modules()[name].state_dict().values()):
            assert torch.equal(a, b), f"{name}.{k} differs after resume"
