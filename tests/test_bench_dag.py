"""benchmarks/bench_default_dag.py times a DAG from no results: what counts as results already there."""

from __future__ import annotations

import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_tracked_results_folder_is_empty_but_a_job_manifest_is_not(tmp_path):
    holds_job_outputs = runpy.run_path(str(ROOT / "benchmarks" / "bench_default_dag.py"))["holds_job_outputs"]
    results = tmp_path / "results"
    results.mkdir()
    (results / "README.md").write_text("tracked in the repository\n")
    assert not holds_job_outputs(results)
    assert not holds_job_outputs(tmp_path / "absent")
    run = results / "shapes" / "tokenizers" / "vqgan" / "base" / "seed0"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text("{}")
    assert holds_job_outputs(results)
