"""Data-parallel training (gloo on the CPU): 2 processes x batch B == 1 process x batch 2B."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lgvq.tokenizers.registry import build_tokenizer
from lgvq.train.distributed import SINGLE, DistInfo, shard
from lgvq.train.tokenizer_task import TokenizerTask

TINY = dict(ch=8, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[], z_channels=8, embed_dim=4, n_embed=16)
STEPS, BATCH = 4, 8


def batches():
    g = torch.Generator().manual_seed(0)
    return [{"image": torch.rand(BATCH, 3, 16, 16, generator=g) * 2 - 1} for _ in range(STEPS)]


def train(name: str, info: DistInfo) -> dict[str, torch.Tensor]:
    name, _, anchor = name.partition(":")  # "cvq:probrandom": CVQ with that anchor rule
    torch.manual_seed(0)
    model = build_tokenizer(name, dict(TINY, **({"cvq_anchor": anchor} if anchor else {})), image_size=16)
    task = TokenizerTask(model, None, lr=1e-3, betas=(0.5, 0.9), dist=info)
    # SGD for the comparison: Adam's first steps are +-lr for any non-zero gradient, so float
    # noise in a near-zero gradient (summation order differs across processes) flips whole steps.
    task.opt_g = torch.optim.SGD(task.opt_g.param_groups[0]["params"], lr=0.05)
    for step, b in enumerate(batches()):
        task.train_step(shard(b, info), step)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def train_head(per_process_batch: int, info: DistInfo) -> dict[str, torch.Tensor]:
    """A second-stage GPT through the heads' loop pieces: shuffled_batches + HeadTask."""
    from lgvq.downstream.task import HeadTask
    from lgvq.stage2.gpt import CodeGPT
    from lgvq.train.loop import shuffled_batches

    torch.manual_seed(0)
    codes = torch.randint(0, 16, (24, 9), generator=torch.Generator().manual_seed(1))
    model = CodeGPT(16, 9, width=16, layers=1, heads=2, dropout=0.0)
    task = HeadTask(model, lambda m, b: {"ce": m.loss(b)}, lr=1e-3, dist=info)
    task.opt = torch.optim.SGD(model.parameters(), lr=0.5)  # see train(): Adam's sign-like first steps
    batches = shuffled_batches(len(codes), per_process_batch, 0, lambda idx, epoch: codes[idx], dist=info)
    step = 0
    for epoch in range(2):
        for b in batches(epoch):
            task.train_step(b, step)
            step += 1
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def spread_samples(n_chunks: int, info: DistInfo) -> dict[str, torch.Tensor]:
    """Second-stage sampling as `lgvq stage2 run` spreads it: chunk c drawn with a generator seeded by c."""
    from lgvq.stage2.gpt import CodeGPT
    from lgvq.train.distributed import map_chunks_to_main

    torch.manual_seed(0)
    model = CodeGPT(16, 9, width=16, layers=1, heads=2).eval()
    got = map_chunks_to_main(n_chunks, lambda c: model.sample(3, generator=torch.Generator().manual_seed(c)), info)
    return {"samples": torch.stack(got) if got is not None else torch.empty(0)}


def _worker(rank: int, world: int, init_file: str, fn: str, arg, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.save(globals()[fn](arg, DistInfo(rank, world, rank)), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def run_parallel(tmp_path, arg, world: int = 2, fn: str = "train") -> list[dict[str, torch.Tensor]]:
    mp.spawn(_worker, args=(world, str(tmp_path / "init"), fn, arg, str(tmp_path)), nprocs=world, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]


def test_two_processes_with_half_batches_match_one_process_with_the_whole_batch(tmp_path):
    ranks = run_parallel(tmp_path, "vqvae")
    single = train("vqvae", SINGLE)
    for k, v in single.items():
        assert torch.allclose(ranks[0][k], v, atol=1e-6), f"{k} differs from the single-process run"
        assert torch.equal(ranks[0][k], ranks[1][k]), f"{k} differs between replicas"


def train_cvq_variants(_, info: DistInfo) -> dict[str, torch.Tensor]:
    return {f"{anchor}/{k}": v for anchor in ("closest", "probrandom") for k, v in train(f"cvq:{anchor}", info).items()}


def test_cvq_codebook_updates_outside_autograd_stay_identical_across_replicas(tmp_path):
    """No broadcast of CVQ's codebook or usage: both are reduced over every rank's features, so the
    update is the same on each replica, and (closest anchors) equal to one process on the whole batch."""
    ranks = run_parallel(tmp_path, None, fn="train_cvq_variants")
    for k in ranks[0]:
        assert torch.equal(ranks[0][k], ranks[1][k]), f"{k} drifted between replicas"
    single = train("cvq:closest", SINGLE)
    for k, v in single.items():
        assert torch.allclose(ranks[0][f"closest/{k}"], v, atol=1e-6), f"{k} differs from the single-process run"
    assert ranks[0]["closest/quantizer.usage"].sum() > 0


def test_second_stage_and_heads_train_data_parallel_like_one_process_with_the_global_batch(tmp_path):
    ranks = run_parallel(tmp_path, 4, fn="train_head")  # 2 processes x 4 = the global batch of 8
    single = train_head(8, SINGLE)
    for k, v in single.items():
        assert torch.allclose(ranks[0][k], v, atol=1e-6), f"{k} differs from the single-process run"
        assert torch.equal(ranks[0][k], ranks[1][k]), f"{k} differs between replicas"


def test_sampling_spread_over_ranks_gives_rank_0_the_samples_of_one_process_in_order(tmp_path):
    ranks = run_parallel(tmp_path, 5, fn="spread_samples")  # 5 chunks: rank 1 draws one fewer
    single = spread_samples(5, SINGLE)["samples"]
    assert single.shape == (5, 3, 9) and torch.equal(ranks[0]["samples"], single)
    assert ranks[1]["samples"].numel() == 0  # the other ranks hand theirs over and keep nothing


def test_data_parallel_batches_refuse_a_global_batch_larger_than_the_data():
    from lgvq.train.loop import shuffled_batches

    from lgvq.config import ConfigError

    with pytest.raises(ConfigError, match="stage2.batch_size"):
        shuffled_batches(10, 8, 0, lambda idx, epoch: idx, dist=DistInfo(0, 2), key="stage2.batch_size")
    ranks = [list(shuffled_batches(20, 4, 0, lambda idx, epoch: idx, dist=DistInfo(r, 2))(0)) for r in range(2)]
    assert [len(b) for b in ranks[0]] == [4, 4]  # 20 = 2 global batches of 8; the ragged 4 is dropped
    assert not set(sum(ranks[0], [])) & set(sum(ranks[1], []))  # disjoint shares


class _DrawTask:
    """Records the random numbers each step draws (dropout masks, LG word masks, diffusion t)."""

    def __init__(self) -> None:
        self.model = torch.nn.Linear(1, 1)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.0)
        self.draws: list[float] = []

    def modules(self):
        return {"m": self.model}

    def optimizers(self):
        return {"o": self.opt}

    def train_step(self, batch, step):
        self.draws.append(float(torch.rand(())))
        return {"x": 0.0}


def draws_in_loop(out_dir: str, info: DistInfo) -> dict[str, torch.Tensor]:
    from lgvq.train.loop import train_loop

    task = _DrawTask()
    train_loop(task, lambda epoch: iter([0, 1, 2]), out_dir=f"{out_dir}/loop{info.rank}", max_steps=3, seed=5,
               config_hash="h", ckpt_every=10, log_every=1, dist=info)
    return {"draws": torch.tensor(task.draws)}


def test_each_rank_draws_its_own_random_numbers_and_rank_0_those_of_one_process(tmp_path):
    ranks = run_parallel(tmp_path, str(tmp_path), fn="draws_in_loop")
    single = draws_in_loop(str(tmp_path / "single"), SINGLE)["draws"]
    assert torch.equal(ranks[0]["draws"], single)
    assert not torch.equal(ranks[0]["draws"], ranks[1]["draws"])  # else a global batch repeats one share's noise


def test_shard_splits_every_field_and_refuses_uneven_batches():
    b = {"image": torch.arange(8), "image_id": list(range(8))}
    assert shard(b, DistInfo(1, 2))["image"].tolist() == [4, 5, 6, 7]
    assert shard(b, DistInfo(1, 2))["image_id"] == [4, 5, 6, 7]
    with pytest.raises(ValueError, match="train.batch_size"):
        shard(b, DistInfo(0, 3))


@pytest.mark.slow
def test_torchrun_trains_a_tokenizer_and_a_head_job_with_two_processes(tmp_path):
    """What the DAG runs when train.gpus / downstream.gpus > 1 (gloo on the CPU): rank 0 writes,
    manifests say 2."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    from lgvq.cli import main

    root = Path(__file__).resolve().parent.parent
    cfg = yaml.safe_load((root / "config" / "smoke.yaml").read_text())
    cfg.update(results_dir=str(tmp_path / "r"), train={**cfg["train"], "gpus": 2},
               downstream={**cfg["downstream"], "gpus": 2},
               tokenizers={"vqvae": cfg["tokenizers"]["vqvae"]}, ablation={"tokenizer": None},
               dose_response={"enabled": False}, references={"enabled": False})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    sel = ["--config", str(path), "--dataset", "shapes"]
    assert main(["data", "prepare", *sel]) == 0
    assert main(["text", "cache", *sel, "--out", str(tmp_path / "r" / "shapes" / "text" / "minilm.npz")]) == 0
    torchrun = Path(sys.executable).parent / "torchrun"
    out = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "lgvq.cli", "tokenizer",
                          "train", *sel, "--tokenizer", "vqvae", "--variant", "lg", "--seed", "0"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "r" / "shapes" / "tokenizers" / "vqvae" / "lg" / "seed0"
    assert json.loads((run / "manifest.json").read_text())["processes"] == 2
    assert torch.load(run / "model.pt", weights_only=True)["steps"] == cfg["train"]["steps"]

    sel += ["--tokenizer", "vqvae", "--variant", "lg", "--seed", "0"]
    assert main(["tokenizer", "encode", *sel]) == 0
    out = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "lgvq.cli", "downstream",
                          "run", "--task", "vqa", *sel], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    vqa = tmp_path / "r" / "shapes" / "eval" / "vqa" / "vqvae" / "lg" / "seed0"
    assert json.loads((vqa / "manifest.json").read_text())["processes"] == 2
    assert "Accuracy" in json.loads((vqa / "metrics.json").read_text())["metrics"]


class _Collectives:
    """Stands in for torch.distributed's collectives in one process (a finished no-op): counts calls and bytes."""

    def __init__(self, monkeypatch) -> None:
        self.calls: list[tuple[str, int]] = []

        class Done:
            def wait(self):
                return True

        def record(kind):
            def collective(t, *args, async_op=False, **kwargs):
                self.calls.append((kind, t.numel() * t.element_size()))
                return Done() if async_op else None
            return collective

        monkeypatch.setattr(dist, "all_reduce", record("all_reduce"))
        monkeypatch.setattr(dist, "broadcast", record("broadcast"))


def test_a_vqgan_lg_step_all_reduces_once_per_bucket_and_broadcasts_only_the_buffers_it_changed(monkeypatch):
    from lgvq.lg.module import LanguageGuidance
    from lgvq.text.base import TextFeatures

    B, L, DT, V = 4, 10, 12, 40
    valid = torch.ones(B, L, dtype=torch.bool)
    special = torch.zeros(B, L, dtype=torch.bool)
    special[:, [0, -1]] = True
    text = TextFeatures(torch.randint(0, V, (B, L)), torch.randn(B, L, DT), valid, special, torch.randn(B, DT))
    torch.manual_seed(0)
    model = build_tokenizer("vqgan", dict(TINY, disc_start=0, disc_layers=1), image_size=16)
    lg = LanguageGuidance(code_dim=4, text_width=DT, grid_tokens=64, token_embeddings=torch.randn(V, DT), gsa=1.0,
                          mtp=1.0, ras=1.0, max_len=L)
    task = TokenizerTask(model, lg, lr=1e-3, betas=(0.5, 0.9), micro_batch=2, dist=DistInfo(0, 2))
    seen = _Collectives(monkeypatch)
    task.train_step({"image": torch.rand(B, 3, 16, 16) * 2 - 1, "text": text}, 0)
    reduces = [b for kind, b in seen.calls if kind == "all_reduce"]
    # every trainable parameter's gradient once, in one bucket each (the tiny model fits in 25 MB)
    params = [p for o in task.optimizers().values() for g in o.param_groups for p in g["params"]]
    assert len(reduces) == 2 and sum(reduces) == sum(p.numel() * 4 for p in params)
    # only BatchNorm's running statistics changed: the LG token embeddings (V x DT) never travel
    batchnorm = sum(b.numel() * b.element_size() for b in model.discriminator.buffers())
    assert sum(b for kind, b in seen.calls if kind == "broadcast") == batchnorm
