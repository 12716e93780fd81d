"""The documented example tokenizer (docs/new_tokenizer.md) runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from lgvq.tokenizers.registry import build_tokenizer
from lgvq.train.tokenizer_task import TokenizerTask

DOC = Path(__file__).resolve().parent.parent / "docs" / "new_tokenizer.md"


def test_documented_example_registers_trains_and_round_trips():
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    exec(compile(code, str(DOC), "exec"), {"__name__": "doc_example"})
    model = build_tokenizer("patchvq", {"patch": 4, "embed_dim": 8, "n_embed": 32}, image_size=16)
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    task = TokenizerTask(model, None, lr=1e-2, betas=(0.5, 0.9))
    first = task.train_step({"image": x}, 0)["rec"]
    for step in range(1, 40):
        last = task.train_step({"image": x}, step)["rec"]
    assert last < first
    codes = model(x).codes
    assert codes.shape == (4, 4, 4) and model.decode_codes(codes).shape == x.shape
