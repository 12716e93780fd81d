"""Cluster resources (issue 20, item 4): what each job asks SLURM or a local `--resources gpu=N` for.

- the sbatch and srun arguments of a `train.gpus: 4` config, rendered by snakemake-executor-plugin-slurm's
  own functions from the resources a dry run of profiles/slurm gives each job;
- the resource model (lgvq/pipeline/resources.py): scaling, per-rule overrides, bad overrides;
- the GPU-slot launcher (lgvq/pipeline/launch.py) with fake GPU lists: jobs get distinct devices,
  the locks live as long as the job, signals and exit status pass through;
- the data-parallel backend: NCCL only with a GPU per rank.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from lgvq.config import ConfigError, load_config, validate_config
from lgvq.pipeline import launch
from lgvq.pipeline.resources import RULES, resource_table, rule_resources
from lgvq.train.distributed import choose_backend, rank_device_index

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


class _Resources(dict):
    """What the plugin reads: job.resources.get(...) and job.resources.<name>."""

    __getattr__ = dict.__getitem__


def dry_run_jobs(tmp_path: Path, cfg: dict, profile: str) -> dict[str, tuple[dict, str]]:
    """rule -> (resources, shell command) of one job of each rule, from `snakemake -n -p --profile`."""
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    out = subprocess.run([str(BIN / "snakemake"), "-n", "-p", "--profile", str(ROOT / profile), "-s",
                          str(ROOT / "Snakefile"), "--directory", str(tmp_path), "--configfile", str(path),
                          "--config", "results_dir=results"], env=env, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = {}
    for block in out.stdout.split("\nrule ")[1:]:
        rule = block.split(":", 1)[0]
        if rule == "all":
            continue
        res = re.search(r"^\s+resources: (.*)$", block, re.M).group(1)
        shell = re.search(r"^Shell command: (.*)$", block, re.M)
        values = {}
        for item in res.split(", "):
            k, v = item.split("=", 1)
            values[k] = int(v) if v.isdigit() else v
        jobs.setdefault(rule, (values, shell.group(1) if shell else ""))
    return jobs


def smoke(**stages) -> dict:
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    for stage, gpus in stages.items():
        cfg[stage]["gpus"] = gpus
    return cfg


def test_a_four_gpu_tokenizer_job_is_one_sbatch_task_with_four_gpus_and_torchrun_starts_four_ranks(tmp_path):
    plugin = pytest.importorskip("snakemake_executor_plugin_slurm.submit_string")
    from snakemake_executor_plugin_slurm.utils import set_gres_string
    from snakemake_executor_plugin_slurm_jobstep import get_cpu_setting, get_gpu_setting

    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["retries"] >= 1 and profile["slurm-requeue"] is True
    jobs = dry_run_jobs(tmp_path, smoke(train=4), "profiles/slurm")
    settings = SimpleNamespace(requeue=profile["slurm-requeue"], no_requeue=False, qos=None, reservation=None)
    params = {"run_uuid": "run", "slurm_logfile": "job.log", "comment_str": "c", "account": "", "partition": "-p 'gpu'",
              "workdir": str(tmp_path)}

    def sbatch(rule: str) -> tuple[str, SimpleNamespace]:
        job = SimpleNamespace(resources=_Resources(jobs[rule][0]), threads=1, name=rule)
        return plugin.get_submit_command(job, params, settings=settings) + set_gres_string(job), job

    call, job = sbatch("train_tokenizer")
    from snakemake_executor_plugin_slurm.validation import validate_slurm_extra

    validate_slurm_extra(job)  # the profile's --signal is not one of the options the plugin manages itself
    expected = rule_resources(load_config(tmp_path / "c.yaml"), "train_tokenizer", "shapes")
    assert expected["gpus"] == 4 and expected["cpus_per_task"] == 16
    assert " --gpus=4" in call and "--ntasks-per-gpu" not in call and "--ntasks=" not in call  # one task
    assert f"--cpus-per-task={expected['cpus_per_task']}" in call
    assert f"--mem {expected['mem_mb']}" in call and f"-t {expected['runtime']} " in call
    assert "--signal=TERM@300" in call and "--requeue" in call
    # inside the allocation: srun -n1 with all four GPUs and all CPUs, then torchrun with one rank per GPU
    assert get_gpu_setting(job) == "--gpus=4"
    assert get_cpu_setting(job, True) == f"--cpus-per-task={expected['cpus_per_task']}"
    torchrun = "launch --gpus 4 -- torchrun --standalone --nproc_per_node 4 -m lgvq.cli tokenizer train"
    assert torchrun in jobs["train_tokenizer"][1]

    # the rules that run a model get one GPU; bookkeeping rules none (no --gpus at all)
    for rule in ("encode_codes", "eval_reconstruction", "text_cache", "train_feature_extractor"):
        assert " --gpus=1" in sbatch(rule)[0], rule
        assert "launch --gpus 1 -- lgvq " in jobs[rule][1], rule
    for rule in ("prepare_data", "tables"):
        assert "--gpus" not in sbatch(rule)[0] and "--ntasks=1" in sbatch(rule)[0], rule


def test_the_cpu_cluster_profile_asks_for_no_gpu_and_fits_a_small_node(tmp_path):
    jobs = dry_run_jobs(tmp_path, smoke(), "profiles/slurm-local")
    for rule, (res, _) in jobs.items():
        assert res.get("gpu", 0) == 0 and res["cpus_per_task"] == 1 and res["mem_mb"] <= 4000, (rule, res)


def test_resources_scale_with_steps_batch_image_size_and_processes():
    paper = load_config(ROOT / "config" / "paper.yaml")
    small = load_config(ROOT / "config" / "smoke.yaml")
    big, tiny = rule_resources(paper, "train_tokenizer", "celebahq"), rule_resources(small, "train_tokenizer", "shapes")
    assert big["runtime"] > 24 * 60 > tiny["runtime"] and big["mem_mb"] > tiny["mem_mb"]
    four = copy.deepcopy(paper)
    four["train"]["gpus"] = 4
    r4 = rule_resources(four, "train_tokenizer", "celebahq")
    assert r4["gpus"] == 4 and r4["cpus_per_task"] == 4 * big["cpus_per_task"] and r4["mem_mb"] > 3.5 * big["mem_mb"]
    assert r4["runtime"] == big["runtime"]  # batch_size is per process: each rank does the same work
    # encoding holds the whole dataset's codes: COCO's 123k images take more than CUB's 12k
    coco, cub = rule_resources(paper, "encode_codes", "coco"), rule_resources(paper, "encode_codes", "cub")
    assert coco["mem_mb"] > cub["mem_mb"]
    assert rule_resources(paper, "tables")["gpus"] == 0


def test_a_rules_resources_are_overridden_in_the_config_and_a_bad_override_names_the_key():
    cfg = load_config(ROOT / "config" / "smoke.yaml")
    cfg["resources"] = {"train_tokenizer": {"runtime": 2880, "mem_mb": 32000}}
    r = rule_resources(cfg, "train_tokenizer", "shapes")
    assert (r["runtime"], r["mem_mb"], r["gpus"]) == (2880, 32000, 1)
    from lgvq.pipeline import jobs

    plain = load_config(ROOT / "config" / "smoke.yaml")
    assert jobs.job_hash(jobs.tables(cfg)) == jobs.job_hash(jobs.tables(plain))  # scheduling reruns nothing
    cfg["resources"] = {"stage2": {"gpus": 2}}
    with pytest.raises(ConfigError, match=r"resources\.stage2\.gpus: 2, but stage2\.gpus is 1"):
        rule_resources(cfg, "stage2", "shapes")
    cfg["resources"] = {"stage2": {"gpus": 0}}
    assert rule_resources(cfg, "stage2", "shapes")["gpus"] == 0
    raw = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    with pytest.raises(ConfigError, match="resources"):
        validate_config({**raw, "resources": {"train_tokeniser": {"runtime": 10}}})
    with pytest.raises(ConfigError, match="resources"):
        validate_config({**raw, "resources": {"train_tokenizer": {"walltime": 10}}})


def test_every_rule_has_a_resource_model_and_the_schema_names_exactly_those_rules():
    models = set()
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        # every rule asks for its resources by a model name (the dose-response table shares the tables' `table`)
        for name, body in re.findall(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", smk.read_text(), re.M):
            asked = re.findall(r'resources_of\("(\w+)"', body)
            assert len(asked) == 1, f"rule {name} ({smk.name}) asks for no resource model"
            models |= set(asked)
    # the baseline/ceiling rules are made in a loop (references.smk) and share two models: `reference_head` for a
    # baseline that trains a head (sized by the steps of the task it controls for), `reference` for the others
    asked = re.findall(r'resources_of\("(\w+)"', (ROOT / "workflow/rules/references.smk").read_text())
    assert asked == ["reference_head", "reference"]
    models |= set(asked)
    rules = models
    schema = yaml.safe_load((ROOT / "config" / "schema.yaml").read_text())
    assert rules == set(RULES) == set(schema["properties"]["resources"]["propertyNames"]["enum"])


def test_readme_lists_the_resources_the_paper_profile_asks_for():
    paper = load_config(ROOT / "config" / "paper.yaml")
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- resources:begin -->\n(.*?)\n<!-- resources:end -->", readme, re.S)
    assert block, "README has no generated resources table"
    assert block.group(1).strip() == resource_table(paper, "celebahq")


# --- the GPU-slot launcher (fake GPUs: nothing here touches CUDA) ---

def test_jobs_on_one_machine_get_distinct_gpus_and_a_released_gpu_is_reused(tmp_path):
    devices = ["0", "1", "2", "3"]
    a_names, a_fds = launch.try_acquire(devices, 2, tmp_path)
    b_names, b_fds = launch.try_acquire(devices, 1, tmp_path)
    assert (a_names, b_names) == (["0", "1"], ["2"])
    assert launch.try_acquire(devices, 2, tmp_path) is None  # only "3" is free: nothing is held half-way
    c_names, c_fds = launch.try_acquire(devices, 1, tmp_path)
    assert c_names == ["3"]
    with pytest.raises(TimeoutError, match="no 1 free GPUs"):
        launch.acquire(devices, 1, tmp_path, wait=0.05, timeout=0.2)
    for fd in a_fds:
        os.close(fd)
    assert launch.acquire(devices, 2, tmp_path, wait=0.05, timeout=1)[0] == ["0", "1"]
    with pytest.raises(ValueError, match="asks for 5 GPUs, this machine lets it see 4"):
        launch.acquire(devices, 5, tmp_path)
    for fd in b_fds + c_fds:
        os.close(fd)


def _launch(tmp_path: Path, gpus: int, code: str, visible: str | None = "0,1,2,3", **kw):
    env = {**os.environ, "LGVQ_GPU_LOCK_DIR": str(tmp_path / "locks")}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    cmd = [sys.executable, "-m", "lgvq.pipeline.launch", "--gpus", str(gpus), "--", sys.executable, "-c", code]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.PIPE,
                            text=True, **kw)


SHOW_AND_WAIT = "import os, sys; print(os.environ['CUDA_VISIBLE_DEVICES'], flush=True); sys.stdin.read()"


def test_the_launcher_gives_each_job_its_own_gpus_for_as_long_as_it_runs(tmp_path):
    first = _launch(tmp_path, 2, SHOW_AND_WAIT)
    assert first.stdout.readline().strip() == "0,1"
    second = _launch(tmp_path, 1, SHOW_AND_WAIT)
    assert second.stdout.readline().strip() == "2"
    # the job (exec'd, not a child) holds its locks: 0-2 are taken while it runs, 3 is free
    assert launch.try_acquire(["0", "1", "2"], 1, tmp_path / "locks") is None
    first.communicate("")
    second.communicate("")
    assert first.returncode == second.returncode == 0
    got = launch.try_acquire(["0", "1", "2"], 3, tmp_path / "locks")
    assert got is not None and got[0] == ["0", "1", "2"]  # released when the jobs exited
    for fd in got[1]:
        os.close(fd)


def test_the_launcher_passes_the_exit_status_hides_gpus_for_a_cpu_job_and_refuses_too_many(tmp_path):
    p = _launch(tmp_path, 1, "raise SystemExit(7)")
    p.communicate("")
    assert p.returncode == 7
    p = _launch(tmp_path, 0, "import os; print(repr(os.environ['CUDA_VISIBLE_DEVICES']))")
    assert p.communicate("")[0].strip() == "''"
    p = _launch(tmp_path, 5, "print('ran')")
    out, err = p.communicate("")
    assert p.returncode == 2 and "asks for 5 GPUs, this machine lets it see 4" in err and "ran" not in out
    p = _launch(tmp_path, 1, "import os; print(os.environ.get('CUDA_VISIBLE_DEVICES', 'unset'))", visible="")
    assert p.communicate("")[0].strip() == ""  # no GPU visible: the job runs as it is, on the CPU


def test_under_slurm_the_locks_are_per_job_so_renumbered_devices_of_two_jobs_never_collide():
    a = launch.lock_dir({"SLURM_JOB_ID": "11"})
    b = launch.lock_dir({"SLURM_JOB_ID": "12"})
    assert a != b and a != launch.lock_dir({})


def test_nccl_only_when_every_rank_has_its_own_gpu():
    assert choose_backend(0, 2) == "gloo"
    assert choose_backend(1, 2) == "gloo"  # two ranks on one GPU: NCCL would refuse them
    assert choose_backend(2, 2) == "nccl" and choose_backend(8, 4) == "nccl"
    assert [rank_device_index(r, 2) for r in range(4)] == [0, 1, 0, 1]
    assert [rank_device_index(r, 4) for r in range(4)] == [0, 1, 2, 3]


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs: NCCL data parallel with one GPU per rank")
def test_two_ranks_on_two_gpus_all_reduce_with_nccl_each_on_its_own_gpu(tmp_path):
    script = tmp_path / "ranks.py"
    script.write_text("import torch, torch.distributed as d\n"
                      "from lgvq.train.distributed import init_from_env\n"
                      "i = init_from_env()\n"
                      "t = torch.ones(1, device=f'cuda:{torch.cuda.current_device()}')\n"
                      "d.all_reduce(t)\n"
                      "print(d.get_backend(), torch.cuda.current_device(), int(t.item()), flush=True)\n"
                      "d.destroy_process_group()\n")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0,1"}
    out = subprocess.run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(script)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert sorted(line for line in out.stdout.splitlines() if line.startswith("nccl")) == ["nccl 0 2", "nccl 1 2"]


def test_the_extractor_job_is_sized_by_what_it_trains_on_not_by_the_dataset():
    """`eval.shapes_cnn_images` x `shapes_cnn_epochs` images pass through the extractor: 2,000,000 drawn images for 6
    epochs is a longer job than the 1000-image dataset's 1 epoch, and 12 epochs longer still."""
    cfg = load_config(ROOT / "config" / "smoke.yaml")
    cfg["datasets"]["shapes"]["synth"]["n"] = 1000
    cfg["datasets"]["shapes"]["image_size"] = 256  # at 32 px every job here would be the 30-minute minimum
    cfg["eval"].update(shapes_cnn_images=0, shapes_cnn_epochs=1)
    own = rule_resources(cfg, "train_feature_extractor", "shapes")["runtime"]
    cfg["eval"].update(shapes_cnn_images=2_000_000, shapes_cnn_epochs=6)
    drawn = rule_resources(cfg, "train_feature_extractor", "shapes")["runtime"]
    cfg["eval"]["shapes_cnn_epochs"] = 12
    assert drawn > own and rule_resources(cfg, "train_feature_extractor", "shapes")["runtime"] > drawn
