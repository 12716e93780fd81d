"""Kill-anywhere resume (issue 12).

- fast: a run that died while writing a checkpoint (a stale hidden temporary beside the last
  good checkpoint, as a SIGKILL leaves it) resumes to the same weights as an uninterrupted run,
  and the temporary is removed;
- slow: scripts/kill_anywhere.py SIGKILLs a real `lgvq tokenizer train` 3 times at random moments
  and checks the final weights, optimiser states and loss log bit for bit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from lgvq.train.loop import epoch_order, train_loop

ROOT = Path(__file__).resolve().parent.parent
DATA = torch.randn(20, 3, generator=torch.Generator().manual_seed(1))


class Task:
    def __init__(self) -> None:
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(3, 6), nn.Dropout(0.3), nn.Linear(6, 1))
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-2)

    def modules(self):
        return {"net": self.net}

    def optimizers(self):
        return {"opt": self.opt}

    def train_step(self, batch, step):
        loss = (self.net(batch).squeeze(-1) - batch.prod(-1)).pow(2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"mse": loss.item()}


def batches(epoch):
    order = epoch_order(len(DATA), seed=2, epoch=epoch)
    return [DATA[order[i : i + 4]] for i in range(0, 20, 4)]


def run(out, **kw) -> Task:
    task = Task()
    train_loop(task, batches, out_dir=out, max_steps=13, seed=3, config_hash="k", ckpt_every=4, log_every=1, **kw)
    return task


def test_resume_after_dying_inside_a_checkpoint_write(tmp_path):
    ref = run(tmp_path / "ref")
    run(tmp_path / "cut", stop_after=6)  # last good checkpoint: step 6
    stale = tmp_path / "cut" / ".checkpoint.pt.tmp-abc123.pt"
    stale.write_bytes(b"PK\x03\x04 the first bytes of the step-8 checkpoint")
    (tmp_path / "cut" / ".log.csv.tmp-def456.csv").write_text("step,mse\n1,")
    (tmp_path / "cut" / "val").mkdir()
    (tmp_path / "cut" / "val" / ".samples_step0000008.png.tmp-0a1b.png").write_bytes(b"\x89PNG")
    resumed = run(tmp_path / "cut")
    for a, b in zip(ref.net.state_dict().values(), resumed.net.state_dict().values()):
        assert torch.equal(a, b)
    assert (tmp_path / "ref" / "log.csv").read_bytes() == (tmp_path / "cut" / "log.csv").read_bytes()
    assert sorted(str(f.relative_to(tmp_path / "cut")) for f in (tmp_path / "cut").rglob("*")) == [
        "checkpoint.pt", "log.csv", "val"]


@pytest.mark.slow
def test_kill_anywhere_script_three_kills(tmp_path):
    out = tmp_path / "summary.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "kill_anywhere.py"), "--kills", "3", "--seed", "1", "--steps", "8",
         "--ckpt-every", "2", "--images", "20", "--batch-size", "4", "--workdir", str(tmp_path / "work"),
         "--out", str(out)],
        check=False, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary["kills_landed"] == 3
    assert summary["resumes"] >= 3
    assert summary["equal"] is True
    for r in summary["rounds"]:
        assert r["comparison"]["model.pt"]["equal"] and r["comparison"]["model.pt"]["tensors"] > 0
        # model.pt is the same file byte for byte (the checkpoint's tensors are equal; its bytes may differ in
        # how optimiser-state storages are laid out after a load, which no later stage reads)
        assert r["comparison"]["model.pt"]["bytes_equal"]
        assert r["comparison"]["checkpoint.pt"]["equal"] and r["comparison"]["log.csv"]["equal"]
