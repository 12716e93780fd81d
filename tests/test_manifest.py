"""Manifests: a job that writes its manifest into several folders counts once in sums of job time."""

from __future__ import annotations

import json
from pathlib import Path

from lgvq.manifest import RunRecord, distinct_jobs


def test_a_job_writing_two_manifests_is_one_job_and_two_jobs_are_two(tmp_path):
    evaluation = RunRecord("eval/reconstruction", {"a": 1}, seed=0)
    evaluation.write(tmp_path / "reconstruction")
    evaluation.write(tmp_path / "codebook")  # as lgvq.pipeline.evaluate writes beside the codebook record
    other = RunRecord("eval/reconstruction", {"a": 1}, seed=1)
    other.started += 1.0  # a second job of the same kind, started later
    other.write(tmp_path / "seed1")
    manifests = [json.loads(p.read_text()) for p in sorted(tmp_path.rglob("manifest.json"))]
    assert len(manifests) == 3
    jobs = distinct_jobs(manifests)
    assert len(jobs) == 2 and {j["seed"] for j in jobs} == {0, 1}


def test_the_reports_wall_time_per_step_counts_each_job_once(tmp_path):
    from lgvq.tables.provenance import provenance_html

    job = {"step": "eval/reconstruction", "started_unix": 100.0, "argv": ["lgvq", "eval"], "wall_time_s": 30.0}
    files = []
    for folder, m in (("reconstruction", job), ("codebook", job), ("seed1", {**job, "started_unix": 200.0})):
        (tmp_path / folder).mkdir()
        files.append(tmp_path / folder / "manifest.json")
        files[-1].write_text(json.dumps(m))
    html = provenance_html(tuple(files), tmp_path, {})
    assert "3 job manifests" in html and "<li>eval/reconstruction: 60 s</li>" in html  # two jobs, not three
    assert "device cpu (model not recorded)" in html  # these manifests name no device


def test_the_reports_provenance_names_each_jobs_device_model(tmp_path):
    from lgvq.tables.provenance import provenance_html

    files = []
    gpu_node = {"cpu_model": "AMD EPYC", "cuda_device": "NVIDIA H100"}
    for folder, device in (("a", {"cpu_model": "AMD EPYC"}), ("b", gpu_node)):
        (tmp_path / folder).mkdir()
        files.append(tmp_path / folder / "manifest.json")
        files[-1].write_text(json.dumps({"step": "x", "started_unix": len(files), "device": device}))
    html = provenance_html(tuple(files), tmp_path, {})
    assert "device AMD EPYC, NVIDIA H100;" in html and "<td>AMD EPYC</td>" in html and "<td>NVIDIA H100</td>" in html


def test_the_device_record_names_the_cpu_model_where_linux_says_it():
    from lgvq.manifest import device_info

    cpuinfo = Path("/proc/cpuinfo")
    names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines()
             if ln.startswith("model name")] if cpuinfo.exists() else []
    info = device_info()
    if names:
        assert info["cpu_model"] == names[0]
    else:
        assert "cpu_model" in info
