"""Bad-input catalogue, failures while a job runs (issue 12): a non-finite loss, an unwritable or full
disk, a missing system tool (Java, WordNet). The job stops with one clear line and leaves the last
good checkpoint, never a half-written file."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys

import pytest
import torch
from bad_inputs_kit import RUN, TINY, catalogue, Env, p

CASES, case = catalogue()


def _poison_losses(e: Env, at_step: int, term: str) -> None:
    from lgvq.tokenizers.vqvae import VQVAE

    real = VQVAE.generator_losses

    def poisoned(self, x, out, step):
        terms = dict(real(self, x, out, step))
        if step >= at_step:
            terms[term] = terms[term] * float("inf")
        return terms

    e.monkeypatch.setattr(VQVAE, "generator_losses", poisoned)


@case
def non_finite_loss(e: Env) -> None:
    _poison_losses(e, at_step=1, term="commit")
    run = e.res / "tokenizers" / "vqvae" / "lg" / "seed7"
    e.cli("tokenizer", "train", run=[*RUN[:-1], "7"], expect=r"non-finite loss at step 1: term 'commit' = (inf|nan)",
          absent=(run / "model.pt",))
    # the checkpoint of the last finite step survives (step 1), nothing was written after the NaN
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 1


@case
def non_finite_loss_from_nan_pixels(e: Env) -> None:
    from lgvq.tokenizers.registry import build_tokenizer
    from lgvq.train.loop import NonFiniteLossError
    from lgvq.train.terms import TermWindow
    from lgvq.train.tokenizer_task import TokenizerTask

    task = TokenizerTask(build_tokenizer("vqvae", TINY, image_size=16), None, lr=1e-3, betas=(0.5, 0.9))
    x = torch.zeros(2, 3, 16, 16)
    x[1, 0, 3, 3] = float("nan")
    window = TermWindow()  # what train_loop does with the step's terms: checked at the next log point
    window.add(task.train_step({"image": x}, 12), 12)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 12: term '\w+' = nan"):
        window.flush()


@case
def unwritable_output_directory(e: Env) -> None:
    # Tests may run as root, for whom chmod does not stop writes: a regular file where a directory
    # is needed fails for everybody (ENOTDIR).
    blocker = e.dir / "blocker"
    blocker.write_text("a file, not a directory")
    e.cli("data", "prepare", patch=lambda c: c.update(results_dir=str(blocker / "res")), run=["--dataset", "shapes"],
          expect=f"cannot write {p(blocker / 'res')}/shapes/.*: Not a directory", protect=(blocker,))


@case
def run_directory_blocked_by_a_file(e: Env) -> None:
    blocked = e.res / "tokenizers" / "vqvae" / "lg" / "seed9"
    blocked.write_text("not a directory")
    e.cli("tokenizer", "train", run=[*RUN[:-1], "9"], expect=rf"File exists: '{p(blocked)}'", protect=(blocked,))


@case
def read_only_output_directory(e: Env) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions (covered by unwritable_output_directory)")
    out = e.dir / "tables"
    out.mkdir()
    out.chmod(0o555)
    try:
        e.cli("tables", "build", "--all", "--out-dir", str(out), run=[], expect=f"cannot write {p(out)}")
    finally:
        out.chmod(0o755)


@case
def disk_full_while_writing_a_checkpoint(e: Env) -> None:
    from lgvq.train import loop

    real_save, calls = torch.save, []

    def save_then_fill_the_disk(obj, f, *a, **k):
        calls.append(f)
        if len(calls) < 2:
            return real_save(obj, f, *a, **k)
        f.write(b"PK\x03\x04 half a checkpoint")  # torch.save writes through the temporary file's handle
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    e.monkeypatch.setattr(loop.torch, "save", save_then_fill_the_disk)
    run = e.res / "tokenizers" / "vqvae" / "lg" / "seed8"
    e.cli("tokenizer", "train", run=[*RUN[:-1], "8"],
          expect=f"cannot write {p(run / 'checkpoint.pt')}: No space left on device", absent=(run / "model.pt",))
    # the step-1 checkpoint is intact, and no half-written temporary is left beside it
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 1
    assert sorted(f.name for f in run.iterdir() if f.name.startswith(".")) == []


@case
def java_missing_for_caption_metrics(e: Env) -> None:
    from lgvq.metrics import captions

    e.monkeypatch.setattr(captions.shutil, "which", lambda name, *a, **k: None)
    with pytest.raises(captions.JavaMissingError, match=r"Java 17 needed for METEOR"):
        captions.caption_scores({1: "a red circle"}, {1: ["a red circle", "one red disc"]})


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, env):
    CASES[name](env)


def test_wordnet_missing_for_wups(tmp_path):
    empty = tmp_path / "nltk_data"
    empty.mkdir()
    code = "from lgvq.metrics.vqa import wups; print(wups(['dog'], ['cat'], 0.9))"
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "NLTK_DATA": str(empty)})
    if out.returncode == 0:
        pytest.skip("WordNet is installed in one of nltk's default folders (found without NLTK_DATA)")
    assert "WordNetMissingError" in out.stderr
    assert re.search(rf"WordNet \(needed for WUPS\) not found under {p(empty)}.*install_wordnet\.sh", out.stderr)
