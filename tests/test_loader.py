"""The streaming input (lgvq.data.loader): batches are a pure function of (seed, epoch, rank, world,
position), worker processes never change a batch or the global RNG, and a training resumed with
workers on ends with the weights of an uninterrupted run without decoding the batches it skips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lgvq.config import ConfigError
from lgvq.data.base import ImageRecord
from lgvq.data.dataset import ImageTextDataset
from lgvq.data.loader import epoch_batch_indices, image_batches, resolve_workers, sequential_batches
from lgvq.io import ArtifactError
from lgvq.pipeline.tokenizer import TextBatcher
from lgvq.tokenizers.registry import build_tokenizer
from lgvq.train.loop import epoch_order, shuffled_batches, train_loop
from lgvq.train.tokenizer_task import TokenizerTask

TINY = dict(ch=8, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[], z_channels=8, embed_dim=4, n_embed=16)


def records(tmp_path, n=12, size=(24, 20)) -> list[ImageRecord]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        out.append(ImageRecord(i, path, (f"caption {i} a", f"caption {i} b")))
    return out


class CountingDataset(ImageTextDataset):
    """Records which items were decoded (in-process only: workers decode in their own copies)."""

    decoded: list[int] = []

    def __getitem__(self, index):
        CountingDataset.decoded.append(index)
        return super().__getitem__(index)


def test_epoch_batches_are_a_pure_function_of_seed_epoch_rank_world_and_position():
    order = epoch_order(10, seed=3, epoch=2)
    full = epoch_batch_indices(10, 4, order)
    assert full == [order[0:4], order[4:8]]  # the ragged last batch is dropped
    assert epoch_batch_indices(10, 4, order, start=1) == full[1:]
    assert epoch_batch_indices(10, 4, order, start=2) == []
    assert epoch_batch_indices(10, 4, order, drop_last=False)[-1] == order[8:]
    ranks = [epoch_batch_indices(10, 4, order, rank=r, world=2) for r in range(2)]
    assert [a + b for a, b in zip(*ranks)] == full  # each rank decodes only its contiguous share
    assert epoch_batch_indices(10, 4, epoch_order(10, 3, 2), rank=1, world=2, start=1) == ranks[1][1:]
    with pytest.raises(ValueError, match="does not split evenly"):
        epoch_batch_indices(10, 3, order, world=2)


def test_shuffled_batches_start_at_a_position_without_building_the_skipped_batches():
    built = []
    batches = shuffled_batches(10, 3, 0, lambda idx, epoch: built.append(idx) or idx)
    full = list(batches(1))
    built.clear()
    assert list(batches(1, start=2)) == full[2:]
    assert built == full[2:]


def test_workers_give_the_batches_of_the_in_process_loader_and_leave_the_global_rng_alone(tmp_path):
    data = ImageTextDataset(records(tmp_path), image_size=16, train=True, resize_mode="resize_crop", seed=4)
    data.set_epoch(3)
    plan = epoch_batch_indices(len(data), 4, epoch_order(len(data), 4, 3))
    torch.manual_seed(0)
    before = torch.get_rng_state()
    inproc = list(image_batches(data, plan, workers=0))
    assert torch.equal(torch.get_rng_state(), before)  # the loader's base seed comes from its own generator
    forked = list(image_batches(data, plan, workers=2, prefetch=1))
    assert torch.equal(torch.get_rng_state(), before)
    assert len(inproc) == len(forked) == 3
    for a, b in zip(inproc, forked):
        assert torch.equal(a["image"], b["image"]) and a["caption"] == b["caption"] and a["image_id"] == b["image_id"]
    assert [b["index"] for b in inproc] == plan
    # The same items, decoded one by one as the old loop did.
    assert torch.equal(inproc[1]["image"], torch.stack([data[j]["image"] for j in plan[1]]))


def test_sequential_batches_cover_a_split_in_order_with_a_short_last_batch(tmp_path):
    data = ImageTextDataset(records(tmp_path, n=7), image_size=16, train=False, seed=0)
    batches = list(sequential_batches(data, 3, workers=1))
    assert [b["image_id"] for b in batches] == [[0, 1, 2], [3, 4, 5], [6]]
    assert torch.equal(batches[2]["image"][0], data[6]["image"])


@pytest.mark.parametrize("workers", [0, 1])
def test_an_unreadable_image_is_one_error_naming_the_file_with_or_without_workers(tmp_path, workers):
    recs = records(tmp_path, n=4)
    recs[2].path.write_bytes(b"not a png")
    data = ImageTextDataset(recs, image_size=16, train=False, seed=0)
    with pytest.raises(ArtifactError) as err:
        list(sequential_batches(data, 2, workers=workers))
    assert str(err.value).startswith(f"unreadable image {recs[2].path}")
    assert "Traceback" not in str(err.value) and "\n" not in str(err.value)


def test_worker_count_auto_follows_the_jobs_threads_and_bad_values_name_the_key(monkeypatch):
    monkeypatch.setattr("lgvq.data.loader.available_cpus", lambda: 4)
    assert resolve_workers("auto", threads=1) == 0  # one thread: decode in the training process
    assert resolve_workers("auto", threads=3) == 2
    assert resolve_workers("auto", threads=16) == 3  # never more than the CPUs this process may use
    monkeypatch.setenv("LGVQ_THREADS", "2")
    assert resolve_workers("auto") == 1
    assert resolve_workers(5) == 5
    with pytest.raises(ConfigError, match="data.loader_workers"):
        resolve_workers(-1)


def _train(tmp_path, out, workers, **kw) -> TokenizerTask:
    data = CountingDataset(records(tmp_path), image_size=16, train=True, resize_mode="resize_crop", seed=2)

    def epoch_batches(epoch, start=0):
        data.set_epoch(epoch)
        plan = epoch_batch_indices(len(data), 4, epoch_order(len(data), 2, epoch), start=start)
        return image_batches(data, plan, workers=workers, prefetch=1, finish=TextBatcher(None).attach, seed=epoch)

    torch.manual_seed(0)
    task = TokenizerTask(build_tokenizer("vqvae", TINY, image_size=16), None, lr=1e-3, betas=(0.5, 0.9))
    train_loop(task, epoch_batches, out_dir=out, max_steps=8, seed=5, config_hash="h", ckpt_every=2, log_every=1, **kw)
    return task


def test_resume_with_loader_workers_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    ref = _train(tmp_path, tmp_path / "ref", workers=0)
    _train(tmp_path, tmp_path / "cut", workers=2, stop_after=5)  # stops mid-epoch 1 (3 batches an epoch)
    resumed = _train(tmp_path, tmp_path / "cut", workers=2)
    for (k, a), b in zip(ref.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), f"{k} differs after a resume with workers"
    assert (tmp_path / "ref" / "log.csv").read_bytes() == (tmp_path / "cut" / "log.csv").read_bytes()


def test_a_resumed_epoch_decodes_none_of_the_batches_before_its_position(tmp_path):
    _train(tmp_path, tmp_path / "cut", workers=0, stop_after=4)  # checkpoint at step 4: epoch 1, batch 1
    CountingDataset.decoded = []
    _train(tmp_path, tmp_path / "cut", workers=0)
    resumed_epoch = epoch_batch_indices(12, 4, epoch_order(12, 2, 1), start=1)
    assert CountingDataset.decoded[:8] == [i for b in resumed_epoch for i in b]
    assert len(CountingDataset.decoded) == 4 * 4  # steps 5..8: four batches of four, nothing more
