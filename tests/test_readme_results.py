"""The README's results section says which jobs were re-run after the recorded run, and which of them only
re-read a trained checkpoint (so their wall time is not the training's)."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def manifest(path: Path, step: str, revision: str, started: float, training: dict | None = None) -> None:
    path.mkdir(parents=True)
    m = {"step": step, "git": {"revision": revision}, "started_unix": started, "argv": [step, str(started)],
         "wall_time_s": 9.0, **({"training": training} if training else {})}
    (path / "manifest.json").write_text(json.dumps(m))


def test_jobs_re_run_after_the_run_are_named_with_whether_they_trained(tmp_path):
    later_jobs = runpy.run_path(str(ROOT / "scripts" / "readme_results.py"))["later_jobs"]
    manifest(tmp_path / "tok", "tokenizer/train", "aaaaaaa111", 1.0, {"steps": 10, "resumed_at_step": 0})
    assert later_jobs(tmp_path, "aaaaaaa111") == ""  # every job of the run's revision: nothing to say
    for i in range(2):
        manifest(tmp_path / f"vqa{i}", "downstream/vqa", "bbbbbbb222", 2.0 + i, {"steps": 800, "resumed_at_step": 800})
    manifest(tmp_path / "maj", "reference/majority-per-type", "bbbbbbb222", 5.0)
    manifest(tmp_path / "cap", "downstream/captioning", "bbbbbbb222", 6.0, {"steps": 800, "resumed_at_step": 300})
    note = later_jobs(tmp_path, "aaaaaaa111")
    assert "at git bbbbbbb:" in note
    assert "2 downstream/vqa re-reading trained checkpoints" in note
    assert "1 downstream/captioning," in note  # resumed part-way: it trained, so no "re-reading"
    assert "1 reference/majority-per-type" in note and "tokenizer/train" not in note
