# Shared helpers for the rules: wildcard constraints and per-job config hashes.

wildcard_constraints:
    dataset=r"[A-Za-z0-9_\-]+",
    tokenizer=r"[A-Za-z0-9_\-]+",
    variant=r"base|lg|gsa|mtp|mtp-ras|mtp-gsa",
    seed=r"\d+",
    split=r"train|val|test",
    table=r"[a-z_]+",
    encoder=r"minilm|clip",
    s2task=r"unconditional|completion|semantic|t2i_diffusion|t2i_ar",
    dstask=r"captioning|vqa|grounding",


def dataset_hash(wc):
    from lgvq.config import dataset_settings

    return config_hash(dataset_settings(config, wc.dataset))


def tokenizer_hash(wc):
    from lgvq.config import tokenizer_job_slice

    return config_hash(tokenizer_job_slice(config, wc.dataset, wc.tokenizer, wc.variant, int(wc.seed)))


def eval_hash(wc):
    """What an evaluation of a tokenizer run depends on beyond the run: the evaluation settings
    and how many test images it scores."""
    return config_hash([tokenizer_hash(wc), config["eval"], config["datasets"][wc.dataset]["eval_images"]])


LGVQ = "lgvq"


def launcher(gpus: int) -> str:
    """A training job with several GPUs: torchrun starts one data-parallel process per GPU."""
    return f"torchrun --standalone --nproc_per_node {gpus} -m lgvq.cli" if gpus > 1 else LGVQ


TRAIN_LAUNCH = launcher(config["train"]["gpus"])
SELECT = "--config {params.cfg} --dataset {wildcards.dataset}"
RUN_SELECT = ("--config {params.cfg} --dataset {wildcards.dataset} --tokenizer {wildcards.tokenizer}"
              " --variant {wildcards.variant} --seed {wildcards.seed}")


def fid_extractor_input(wc):
    if config["eval"]["fid_extractor"] == "shapes-cnn":
        return [f"{R}/{wc.dataset}/shapes_cnn/model.pt"]
    return []


def stage2_hash(wc):
    return config_hash([eval_hash(wc), head_settings(config, "stage2"), wc.s2task])  # its scores are evaluations


def downstream_hash(wc):
    return config_hash([tokenizer_hash(wc), head_settings(config, "downstream"), wc.dstask])


def labelmap_vq_input(wc):
    if wc.s2task == "semantic":
        return [f"{R}/{wc.dataset}/labelmap_vq/model.pt"]
    return []
