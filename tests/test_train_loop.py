"""The shared training loop: exact resume, NaN detection, config-hash refusal."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from torch import nn

from lgvq.train.loop import (
    CheckpointMismatchError,
    NonFiniteLossError,
    check_finite,
    epoch_order,
    train_loop,
)

DATA = torch.randn(24, 4, generator=torch.Generator().manual_seed(0))


class ToyTask:
    """A linear regressor with dropout, so the global RNG state matters for exactness."""

    def __init__(self, poison_at: int | None = None) -> None:
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 1))
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-2, betas=(0.5, 0.9))
        self.poison_at = poison_at

    def modules(self):
        return {"net": self.net}

    def optimizers(self):
        return {"opt": self.opt}

    def train_step(self, batch, step):
        loss = (self.net(batch).squeeze(-1) - batch.sum(-1)).pow(2).mean()
        if step == self.poison_at:
            loss = loss * float("nan")
        check_finite({"mse": loss}, step)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"mse": loss.item()}


def batches(epoch: int):
    order = epoch_order(len(DATA), seed=3, epoch=epoch)
    return [DATA[order[i : i + 5]] for i in range(0, len(order) - 4, 5)]  # 4 batches / epoch


def run(tmp, **kw):
    task = ToyTask()
    train_loop(task, batches, out_dir=tmp, max_steps=11, seed=7, config_hash="abc", ckpt_every=3, log_every=1, **kw)
    return task


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
    reference = run(tmp_path / "ref")
    run(tmp_path / "cut", stop_after=5)  # interrupted mid-epoch, between checkpoints
    resumed = run(tmp_path / "cut")
    for a, b in zip(reference.net.parameters(), resumed.net.parameters()):
        assert torch.equal(a, b)
    log = (tmp_path / "cut" / "log.csv").read_text().splitlines()
    assert log[0] == "step,mse" and len(log) == 1 + 11


def test_finished_run_is_not_retrained(tmp_path):
    run(tmp_path)
    mtime = (tmp_path / "checkpoint.pt").stat().st_mtime_ns
    run(tmp_path)
    assert (tmp_path / "checkpoint.pt").stat().st_mtime_ns == mtime


def test_the_loop_state_says_where_this_job_started_so_a_manifest_can_tell_training_from_re_reading(tmp_path):
    def state_of(tmp, **kw):
        return train_loop(ToyTask(), batches, out_dir=tmp, max_steps=11, seed=7, config_hash="abc", ckpt_every=3,
                          log_every=1, **kw).record()

    assert state_of(tmp_path / "a") == {"steps": 11, "resumed_at_step": 0}   # trained here from the start
    assert state_of(tmp_path / "a") == {"steps": 11, "resumed_at_step": 11}  # re-read: this job trained nothing
    state_of(tmp_path / "b", stop_after=5)  # stopped after step 5, its checkpoint written at the stop
    assert state_of(tmp_path / "b") == {"steps": 11, "resumed_at_step": 5}


def test_checkpoint_from_another_config_is_set_aside_never_resumed_and_restored_when_the_config_returns(tmp_path, capsys):
    run(tmp_path, stop_after=3)
    first = (tmp_path / "checkpoint.pt").read_bytes()
    other = ToyTask()
    state = train_loop(other, batches, out_dir=tmp_path, max_steps=11, seed=7, config_hash="other", ckpt_every=3,
                       log_every=1, stop_after=2)
    assert state.step == 2  # trained from scratch: nothing of "abc" was resumed
    assert (tmp_path / "superseded" / "abc" / "checkpoint.pt").read_bytes() == first  # kept, byte for byte
    assert (tmp_path / "superseded" / "abc" / "log.csv").is_file()
    assert "written for config hash abc" in capsys.readouterr().out
    # back to the first config: its checkpoint comes back and resumes at step 3; "other" goes aside
    resumed = run(tmp_path)
    assert (tmp_path / "superseded" / "other" / "checkpoint.pt").is_file()
    assert not (tmp_path / "superseded" / "abc").exists()
    reference = run(tmp_path / "ref")
    for a, b in zip(reference.net.parameters(), resumed.net.parameters()):
        assert torch.equal(a, b)  # the resumed run is the uninterrupted one


def test_loading_a_checkpoint_of_another_config_is_refused(tmp_path):
    from lgvq.train.loop import load_checkpoint

    run(tmp_path, stop_after=3)
    with pytest.raises(CheckpointMismatchError, match="config hash"):
        load_checkpoint(tmp_path / "checkpoint.pt", "other")


def test_nan_loss_names_step_and_term(tmp_path):
    task = ToyTask(poison_at=4)
    with pytest.raises(NonFiniteLossError, match=r"step 4: term 'mse'"):
        train_loop(task, batches, out_dir=tmp_path, max_steps=11, seed=7, config_hash="abc")


def test_empty_training_data_is_an_error(tmp_path):
    with pytest.raises(Exception, match="no batches"):
        train_loop(ToyTask(), lambda e: [], out_dir=tmp_path, max_steps=2, seed=0, config_hash="x")


class SignalledTask(ToyTask):
    """Sends itself a signal in the middle of one step, as `scancel` or a pre-emption would."""

    def __init__(self, signum: int, at_step: int) -> None:
        super().__init__()
        self.signum, self.at_step = signum, at_step

    def train_step(self, batch, step):
        if step == self.at_step:
            os.kill(os.getpid(), self.signum)
        return super().train_step(batch, step)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1])
def test_a_signal_ends_the_step_writes_a_checkpoint_and_the_rerun_is_exact(tmp_path, signum):
    from lgvq.train.loop import TrainingInterrupted

    before = signal.getsignal(signum)
    with pytest.raises(TrainingInterrupted, match=rf"interrupted by {signal.Signals(signum).name} at step 5") as err:
        train_loop(SignalledTask(signum, at_step=4), batches, out_dir=tmp_path / "cut", max_steps=11, seed=7,
                   config_hash="abc", ckpt_every=3, log_every=1)
    assert err.value.step == 5  # the step in flight finished; the checkpoint is at step 5, between cadences
    assert signal.getsignal(signum) is before  # the loop's handler is gone once it returns
    resumed = run(tmp_path / "cut")
    reference = run(tmp_path / "ref")
    for a, b in zip(reference.net.parameters(), resumed.net.parameters()):
        assert torch.equal(a, b)


class DeviceTermsTask(ToyTask):
    """Returns its terms as tensors, unread on the host, as the tokenizer and head tasks do."""

    def train_step(self, batch, step):
        loss = (self.net(batch).squeeze(-1) - batch.sum(-1)).pow(2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        bad = float("inf") if step == self.poison_at else 1.0
        return {"mse": loss.detach(), "aux": loss.detach() * 0 + bad}


def test_terms_returned_as_tensors_are_logged_at_the_log_step_and_match_the_float_log(tmp_path):
    run(tmp_path / "floats")
    task = DeviceTermsTask()
    train_loop(task, batches, out_dir=tmp_path / "tensors", max_steps=11, seed=7, config_hash="abc", ckpt_every=3,
               log_every=4)
    floats = (tmp_path / "floats" / "log.csv").read_text().splitlines()  # log_every=1: every step
    rows = (tmp_path / "tensors" / "log.csv").read_text().splitlines()
    assert rows[0] == "step,mse,aux"
    # steps 4, 8 and the last one (11): each the value at that step, not a mean over the window
    assert [r.split(",")[0] for r in rows[1:]] == ["4", "8", "11"]
    by_step = {r.split(",")[0]: float(r.split(",")[1]) for r in floats[1:]}
    for r in rows[1:]:
        step, mse, aux = r.split(",")
        assert float(mse) == pytest.approx(by_step[step], rel=1e-6) and float(aux) == 1.0


def test_a_non_finite_tensor_term_inside_a_log_window_stops_the_run_naming_step_term_and_window(tmp_path):
    task = DeviceTermsTask(poison_at=5)
    with pytest.raises(NonFiniteLossError, match=r"step 5: term 'aux' = inf .*steps 4-7"):
        train_loop(task, batches, out_dir=tmp_path, max_steps=11, seed=7, config_hash="abc", ckpt_every=100,
                   log_every=4)
    assert not (tmp_path / "checkpoint.pt").exists()  # nothing written after the NaN


def test_a_checkpoint_between_log_points_is_never_written_over_a_non_finite_step(tmp_path):
    task = DeviceTermsTask(poison_at=1)
    with pytest.raises(NonFiniteLossError, match=r"step 1: term 'aux'"):
        train_loop(task, batches, out_dir=tmp_path, max_steps=11, seed=7, config_hash="abc", ckpt_every=2,
                   log_every=10)
    assert not (tmp_path / "checkpoint.pt").exists()
