"""Data-parallel traffic per tokenizer step: collective calls and bytes, before and after bucketing.

One VQ-GAN + LG training step (the paper's tokenizer sizes, CLIP's 49,408 x 512 token embeddings,
the discriminator on) runs in one process as rank 0 of 2, with torch.distributed's collectives
replaced by counters (no process group: nothing is sent, every call and its size is recorded).
"after" is TokenizerTask as it is now (GradientReducer buckets, StateSync); "before" replays the
call pattern of the previous implementation on the same step's gradients and buffers: one
all_reduce per parameter of each optimiser, then a broadcast of every buffer (commit d489ca7's
average_gradients / broadcast_state, loaded from git).

    python benchmarks/bench_dist.py --out benchmarks/results/dist_cpu.json
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lgvq.io import atomic_write_json  # noqa: E402
from lgvq.lg.module import LanguageGuidance  # noqa: E402
from lgvq.manifest import device_info, package_versions  # noqa: E402
from lgvq.text.base import TextFeatures  # noqa: E402
from lgvq.tokenizers.registry import build_tokenizer  # noqa: E402
from lgvq.train.distributed import DistInfo  # noqa: E402
from lgvq.train.tokenizer_task import TokenizerTask  # noqa: E402

BEFORE_COMMIT = "d489ca7"  # the last commit with one collective per parameter and per buffer


class Counter:
    def __init__(self) -> None:
        self.calls: dict[str, list[int]] = {"all_reduce": [], "broadcast": []}

    def install(self) -> None:
        class Done:
            def wait(self):
                return True

        def record(kind):
            def collective(t, *args, async_op=False, **kwargs):
                self.calls[kind].append(t.numel() * t.element_size())
                return Done() if async_op else None
            return collective

        dist.all_reduce, dist.broadcast = record("all_reduce"), record("broadcast")

    def summary(self) -> dict:
        return {k: {"calls": len(v), "MB": round(sum(v) / 2**20, 2)} for k, v in self.calls.items()}


def _old_distributed():
    source = subprocess.run(["git", "show", f"{BEFORE_COMMIT}:lgvq/train/distributed.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "old_distributed.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_distributed", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_distributed"] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--image-size", type=int, default=256)
    args = ap.parse_args()
    cfg = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    params = {k: v for k, v in cfg["tokenizers"]["vqgan"]["params"].items() if k != "perceptual_weights"}
    params["disc_start"] = 0  # the discriminator's optimiser steps too
    torch.manual_seed(0)
    model = build_tokenizer("vqgan", params, image_size=args.image_size)
    b, length, width, vocab = 2, cfg["text_encoder"]["max_length"], 512, 49408
    grid = (args.image_size // model.downsample) ** 2
    lg = LanguageGuidance(code_dim=model.embed_dim, text_width=width, grid_tokens=grid,
                          token_embeddings=torch.randn(vocab, width), gsa=1.0, mtp=1.0, ras=1.0,
                          max_len=length, **cfg["lg"])
    valid = torch.arange(length)[None].expand(b, length) < 12
    special = torch.zeros(b, length, dtype=torch.bool)
    special[:, [0, 11]] = True
    text = TextFeatures(torch.randint(0, vocab, (b, length)), torch.randn(b, length, width), valid, special,
                        torch.randn(b, width))
    batch = {"image": torch.rand(b, 3, args.image_size, args.image_size) * 2 - 1, "text": text}
    task = TokenizerTask(model, lg, lr=1e-4, betas=(0.5, 0.9), dist=DistInfo(0, 2))

    after = Counter()
    real = dist.all_reduce, dist.broadcast
    after.install()
    t0 = time.perf_counter()
    task.train_step(batch, 0)
    step_s = time.perf_counter() - t0
    # The previous implementation's calls, on the gradients and buffers this step left behind.
    before = Counter()
    before.install()
    old = _old_distributed()
    for opt in task.optimizers().values():
        old.average_gradients((p for g in opt.param_groups for p in g["params"]), task.dist)
    old.broadcast_state(task.modules().values(), task.dist)
    dist.all_reduce, dist.broadcast = real

    n_params = sum(len(g["params"]) for o in task.optimizers().values() for g in o.param_groups)
    result = {
        "what": "collectives per data-parallel VQ-GAN+LG step (rank 0 of 2, counted, nothing sent)",
        "model": {"tokenizer": "vqgan (config/paper.yaml sizes, discriminator on, perceptual off)",
                  "image_size": args.image_size, "lg_token_embeddings": [vocab, width],
                  "trainable_tensors": n_params},
        "before": {"commit": BEFORE_COMMIT, **before.summary()},
        "after": after.summary(),
        "step_s_cpu": round(step_s, 2),
        "device": device_info(), "packages": package_versions(),
    }
    atomic_write_json(args.out, result)
    print(result["before"], result["after"])


if __name__ == "__main__":
    main()
