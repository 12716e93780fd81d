# Shared helpers for the rules: wildcard constraints and per-job config hashes.

import re

from lgvq.config import VARIANT_PATTERN  # the named variants and their dose forms (lg-x10)
from lgvq.downstream.registry import HEADS  # the understanding tasks (the config's plug-ins may add some)
from lgvq.stage2.registry import STAGE2_TASKS  # the second-stage tasks (likewise)

wildcard_constraints:
    dataset=r"[A-Za-z0-9_\-]+",
    tokenizer=r"[A-Za-z0-9_\-]+",
    variant=VARIANT_PATTERN,
    seed=r"\d+",
    split=r"train|val|test",
    table="|".join(map(re.escape, plan.table_ids(config))),  # the tables this config builds (paper + tasks' own)
    encoder=re.escape(paths.text_cache_stem(config["text_encoder"]["name"])),  # the configured encoder's cache
    s2task="|".join(map(re.escape, STAGE2_TASKS.names())),
    dstask="|".join(HEADS.names()),


def job_config(wildcards, output):
    """params.cfg of every rule: the validated config file the job reads, named by the config's hash.
    Snakemake does not count a param computed from a job's outputs among its rerun triggers (the
    outputs are tracked already), so the name changing with the config reruns nothing by itself:
    params.h decides what reruns."""
    return CONFIG_JSON


# Each job's params.h: the hash of the config slice its output depends on (lgvq.pipeline.jobs,
# where docs/config_changes.md's table comes from). Snakemake reruns a job when it changes.
def _run(wc):
    return wc.dataset, wc.tokenizer, wc.variant, int(wc.seed)


def data_hash(wc):
    return jobs.job_hash(jobs.data(config, wc.dataset))


def text_cache_hash(wc):
    return jobs.job_hash(jobs.text_cache(config, wc.dataset))


def tokenizer_hash(wc):
    return jobs.job_hash(jobs.tokenizer(config, *_run(wc)))


def extractor_hash(wc):
    return jobs.job_hash(jobs.feature_extractor(config, wc.dataset))


def reconstruction_hash(wc):
    return jobs.job_hash(jobs.reconstruction(config, *_run(wc)))


def text_alignment_hash(wc):
    return jobs.job_hash(jobs.text_alignment(config, *_run(wc)))


def stage2_hash(wc):
    return jobs.job_hash(jobs.stage2_job(config, wc.s2task, *_run(wc)))


def labelmap_vq_hash(wc):
    return jobs.job_hash(jobs.labelmap_vq(config, wc.dataset))


def downstream_hash(wc):
    return jobs.job_hash(jobs.downstream_job(config, wc.dstask, *_run(wc)))


TABLES_HASH = jobs.job_hash(jobs.tables(config))


LGVQ = "lgvq"
# The GPU rules' commands run through lgvq.pipeline.launch: it gives the job its own GPUs on a
# multi-GPU machine (CUDA_VISIBLE_DEVICES, lock files) and execs the command, so a SIGTERM before a
# SLURM time limit reaches the training process itself (the shell is replaced, not a parent).
GPU_LAUNCH = "exec python -m lgvq.pipeline.launch --gpus {resources.gpu} --"


def launcher(gpus: int) -> str:
    """A training job with several GPUs: torchrun starts one data-parallel process per GPU the job
    gets (the rule's `gpu` resource is the same stage's `gpus`: lgvq.pipeline.resources)."""
    cmd = f"torchrun --standalone --nproc_per_node {gpus} -m lgvq.cli" if gpus > 1 else LGVQ
    return f"{GPU_LAUNCH} {cmd}"


# Which ready jobs the free cores take (default 0): Snakemake picks the set of ready jobs with the largest sum of
# priorities that fits the free cores. Jobs that gate many others start first, then the long ones, so that no
# long job is left alone at the end of the DAG while the other cores idle; the short evaluations and baseline rows
# fill the gaps. The default run at 655f7a0 (tokenizers alone at 10: 1305 s on an AMD EPYC) shows why: the text
# cache, which every +LG tokenizer waits for, started at minute 6, and a VQA head whose tokenizer finished at
# minute 11 started at minute 20 and ran alone for the last minute; with gates and long jobs ranked (59b1217),
# 1240 s on the same machine (benchmarks/README.md, DAG wall time).
PRIORITY = {
    # text_cache uses 2 threads, so it needs two free cores at once: its priority must outweigh any two
    # one-thread jobs (at 20 it still lost to the extractor + a tokenizer, 20 + 10, until minute 5 of 59b1217's run)
    "first": 50,
    "gate": 20,  # train_feature_extractor, encode_codes: short, and many jobs wait on each
    "tokenizer": 10,  # train_tokenizer: the longest jobs, and every later stage waits on one
    "long": 5,  # stage2, labelmap_vq, downstream: minutes each
}

TRAIN_LAUNCH = launcher(config["train"]["gpus"])
GPU_LGVQ = launcher(1)  # the other rules that run a model: one process, one GPU when the job has one


def resources_of(rule_name: str, task: str | None = None) -> dict:
    """A rule's cluster resources from lgvq.pipeline.resources (callables: they depend on the dataset).
    `gpu` is snakemake-executor-plugin-slurm's GPU count (sbatch --gpus) and what a local
    `--resources gpu=N` counts. GPU jobs are one task (tasks_per_gpu=0: the plugin adds no
    --ntasks-per-gpu): torchrun starts the ranks inside it, with all its CPUs (cpus_per_task)."""
    from lgvq.pipeline.resources import RULES, rule_resources

    def value(key):
        # a downstream job's own task (or the task a trained baseline controls for): its `downstream.per_task`
        # entry may give it other steps and batch
        return lambda wc: rule_resources(config, rule_name, getattr(wc, "dataset", None),
                                         task or getattr(wc, "dstask", None))[key]

    res = {"mem_mb": value("mem_mb"), "runtime": value("runtime"), "cpus_per_task": value("cpus_per_task")}
    if RULES[rule_name].gpu != "none":
        res.update(gpu=value("gpus"), tasks_per_gpu=0)
    return res


SELECT = "--config {params.cfg} --dataset {wildcards.dataset}"
RUN_SELECT = ("--config {params.cfg} --dataset {wildcards.dataset} --tokenizer {wildcards.tokenizer}"
              " --variant {wildcards.variant} --seed {wildcards.seed}")


# Artifact paths as patterns: lgvq.pipeline.paths (where each path is spelled, for the verbs too)
# with wildcards in place of names. Logs live only here.
RUN = ("{dataset}", "{tokenizer}", "{variant}", "{seed}")
PREPARED = str(paths.prepared_marker(R, "{dataset}"))
STATS = str(paths.stats_file(R, "{dataset}"))
TEXT_CACHE = str(paths.text_cache(R, "{dataset}", config["text_encoder"]["name"]))
SHAPES_CNN = str(paths.shapes_cnn_model(R, "{dataset}"))
LABELMAP_VQ = str(paths.labelmap_vq_model(R, "{dataset}"))
MODEL = str(paths.tokenizer_model(R, *RUN))
CODEBOOK = str(paths.codebook_file(R, *RUN))
TABLES = str(paths.tables_dir(R))
REPORT = str(paths.report_file(R))


def codes(split: str) -> str:
    return str(paths.codes_file(R, *RUN, split))


def metrics(kind: str) -> str:
    return str(paths.metrics_file(R, kind, *RUN))


def fid_extractor_input(wc):
    if config["eval"]["fid_extractor"] == "shapes-cnn":
        return [SHAPES_CNN.format(dataset=wc.dataset)]
    return []


def text_cache_if_needed(wc):
    """Only runs that read text (LG variants, VQCT's word-embedding codebook) wait for the text cache."""
    from lgvq.config import tokenizer_needs_text

    if tokenizer_needs_text(config, wc.dataset, wc.tokenizer, wc.variant):
        return [TEXT_CACHE.format(dataset=wc.dataset)]
    return []


def labelmap_vq_input(wc):
    if STAGE2_TASKS.get(wc.s2task).needs_label_maps:
        return [LABELMAP_VQ.format(dataset=wc.dataset)]
    return []
