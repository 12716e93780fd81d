"""The "not converged" flag: read off a run's logged (validation) curve, shown in its table's notes."""

from __future__ import annotations

import math

import torch

from lgvq.tables.build import write_table
from lgvq.train.convergence import convergence, relative_drop
from lgvq.train.loop import train_loop, validation_interval

from test_train_loop import ToyTask, batches


def curve(values, prefix="val_"):
    return [{"step": 10 * (i + 1), f"{prefix}loss": v} for i, v in enumerate(values)]


def test_a_curve_still_falling_over_its_last_fifth_is_flagged():
    falling = [2.0 * math.exp(-i / 20) + 0.5 for i in range(50)]  # the last fifth still drops ~12 %
    verdict = convergence(curve(falling))
    assert verdict["converged"] is False and verdict["curve"] == "validation"
    assert 0.05 < verdict["relative_drop"] < 0.3
    assert verdict["window"] == [400, 500]


def test_a_plateau_with_noise_is_not_flagged():
    g = torch.Generator().manual_seed(0)
    flat = (1.0 + 0.05 * torch.randn(50, generator=g)).tolist()  # noise of 5 % per point, no trend
    verdict = convergence(curve(flat))
    assert verdict["converged"] is True and abs(verdict["relative_drop"]) < 0.05


def test_the_rule_uses_the_validation_loss_when_logged_else_says_it_used_training():
    rows = [{**t, "val_ce": 1.0} for t in curve([5.0 - 0.1 * i for i in range(20)], prefix="")]
    assert convergence(rows)["curve"] == "validation" and convergence(rows)["converged"]  # val flat, train falls
    train_only = convergence(curve([5.0 - 0.1 * i for i in range(20)], prefix=""))
    assert train_only["curve"] == "training" and not train_only["converged"]
    assert convergence(curve([1.0, 0.5])) is None  # too few points in the last fifth: no verdict


def test_relative_drop_is_the_fall_of_the_fitted_line():
    assert abs(relative_drop([(0, 1.0), (1, 0.9), (2, 0.8)]) - 0.2) < 1e-9
    assert relative_drop([(0, 1.0), (1, 1.1), (2, 1.2)]) < 0  # rising: negative drop


def test_the_loop_logs_validation_and_trains_exactly_as_without_it(tmp_path):
    calls = []

    def run(out, validate=None):
        task = ToyTask()
        state = train_loop(task, batches, out_dir=out, max_steps=11, seed=7, config_hash="abc", ckpt_every=3,
                           log_every=1, validate=validate, val_every=4)
        return task, state

    def validate_draws():  # a validation that consumes RNG (as a diffusion loss does): must not leak
        calls.append(1)
        return {"loss": float(torch.rand(()).item()) + 1.0}

    plain, _ = run(tmp_path / "a")
    validated, state = run(tmp_path / "b", validate_draws)
    for p, q in zip(plain.net.parameters(), validated.net.parameters()):
        assert torch.equal(p, q)
    assert [r["step"] for r in state.log if "val_loss" in r] == [4, 8, 11]  # every val_every and the last step
    assert len(calls) == 3 and plain.net.training  # modules back in training mode
    assert "val_loss" in (tmp_path / "b" / "log.csv").read_text().splitlines()[0]


def test_a_long_run_validates_at_most_val_max_points_times(tmp_path):
    """The cadence widens with the run (paper profile: 200,000 tokenizer steps validate every 2,000, not every
    25), and a short run keeps its `val_every`; the training itself is the same either way."""
    assert validation_interval(25, 200_000, 100) == 2000
    assert validation_interval(25, 2000, 100) == 25  # short enough: val_every as given
    assert validation_interval(25, 2501, 100) == 26  # ceil: never more than max_points
    assert validation_interval(25, 200_000, 0) == 25 and validation_interval(0, 200_000, 100) == 0  # no cap / none

    def run(out, max_points):
        task = ToyTask()
        state = train_loop(task, batches, out_dir=out, max_steps=11, seed=7, config_hash="abc", ckpt_every=3,
                           log_every=1, validate=lambda: {"loss": 1.0}, val_every=1, val_max_points=max_points)
        return task, [r["step"] for r in state.log if "val_loss" in r]

    capped, steps = run(tmp_path / "a", 3)
    assert steps == [4, 8, 11]  # ceil(11 / 3) = 4, and the last step
    uncapped, every = run(tmp_path / "b", 0)
    assert every == list(range(1, 12))
    for p, q in zip(capped.net.parameters(), uncapped.net.parameters()):
        assert torch.equal(p, q)


def test_a_flagged_run_is_named_in_its_tables_notes(tmp_path):
    def rec(seed, verdict):
        return {"kind": "reconstruction", "dataset": "shapes", "tokenizer": "vqgan", "variant": "base", "seed": seed,
                "metrics": {"PSNR": 20.0}, **({"convergence": verdict} if verdict else {})}

    still = {"converged": False, "relative_drop": 0.123, "curve": "validation", "window": [200, 250], "points": 6}
    done = {**still, "converged": True, "relative_drop": 0.01}
    write_table("reconstruction", [rec(0, still), rec(1, done), rec(2, None)], tmp_path, dataset_columns={"shapes": None})
    md = (tmp_path / "reconstruction.md").read_text()
    assert "not converged: reconstruction vqgan/base/seed0 (val loss −12.3 % over the last fifth)" in md
    assert "seed1 (" not in md and "seed2 (" not in md
    write_table("reconstruction", [rec(1, done)], tmp_path / "ok", dataset_columns={"shapes": None})
    assert "not converged" not in (tmp_path / "ok" / "reconstruction.md").read_text()
