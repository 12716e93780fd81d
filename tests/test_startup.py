"""Per-job start-up: what a job imports, and the small replacements that keep torchvision out of it."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap

import pytest
import torch

from lgvq.downstream.grounding import generalized_box_iou_loss
from lgvq.imagegrid import save_png_grid


@pytest.mark.parametrize("shape,nrow,padding", [((16, 3, 8, 8), 8, 2), ((5, 3, 6, 4), 3, 1), ((1, 3, 5, 5), 8, 2),
                                                ((4, 1, 7, 7), 2, 1), ((3, 3, 4, 4), 8, 0)])
def test_png_grids_are_byte_identical_to_torchvisions_save_image(shape, nrow, padding):
    from torchvision.utils import save_image

    images = torch.rand(*shape, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.1  # some values to clip
    ours, theirs = io.BytesIO(), io.BytesIO()
    save_png_grid(images, ours, nrow=nrow, padding=padding)
    save_image(images, theirs, nrow=nrow, padding=padding, format="png")
    assert ours.getvalue() == theirs.getvalue()


def test_a_grid_of_something_other_than_a_batch_is_refused():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        save_png_grid(torch.rand(3, 8, 8), io.BytesIO())


def test_our_giou_loss_equals_torchvisions_values_and_gradients():
    from torchvision.ops import generalized_box_iou_loss as torchvision_giou

    g = torch.Generator().manual_seed(0)
    lo = torch.rand(64, 2, generator=g)
    a = torch.cat([lo, lo + torch.rand(64, 2, generator=g)], 1)
    lo = torch.rand(64, 2, generator=g) * 1.5  # some pairs do not overlap
    b = torch.cat([lo, lo + torch.rand(64, 2, generator=g) * 0.3], 1)
    mine, theirs = a.clone().requires_grad_(), a.clone().requires_grad_()
    ours, ref = generalized_box_iou_loss(mine, b), torchvision_giou(theirs, b, reduction="mean")
    assert torch.equal(ours, ref)
    ours.backward()
    ref.backward()
    assert torch.equal(mine.grad, theirs.grad)
    assert generalized_box_iou_loss(a[:0], b[:0]).item() == 0.0  # no boxes: 0, not NaN


def test_a_jobs_modules_and_image_writing_load_neither_torchvision_nor_transformers(tmp_path):
    # What every tokenizer, evaluation, stage-2 and grounding job runs through: the CLI, the job
    # modules, a tokenizer's codebook picture and a validation grid, the grounding loss.
    script = textwrap.dedent(f"""
        import json, sys
        import torch
        import lgvq.cli, lgvq.pipeline.tokenizer, lgvq.pipeline.evaluate, lgvq.pipeline.stage2
        import lgvq.pipeline.downstream, lgvq.downstream.grounding
        from lgvq.tokenizers.registry import build_tokenizer
        from lgvq.tokenizers.stats import codebook_picture
        from lgvq.imagegrid import save_png_grid
        model = build_tokenizer("vqvae", dict(ch=8, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[],
                                             z_channels=8, embed_dim=4, n_embed=16), image_size=16)
        codebook_picture(model, {str(tmp_path / "codebook.png")!r})
        save_png_grid(torch.rand(4, 3, 16, 16), {str(tmp_path / "grid.png")!r}, nrow=2)
        box = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
        lgvq.downstream.grounding.box_losses(box, box)
        print(json.dumps(sorted(m for m in ("torchvision", "transformers", "torch._dynamo", "pandas", "matplotlib")
                                if m in sys.modules)))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1]) == []
    assert (tmp_path / "codebook.png").stat().st_size > 0 and (tmp_path / "grid.png").stat().st_size > 0
