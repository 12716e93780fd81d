"""What each job of the DAG depends on: one function per job kind, returning the config slice
whose hash decides when Snakemake reruns it (the rules' `params.h`) and which the job writes
into its manifest. Spelled once, here; the rules and the verbs both call these.

A slice holds exactly the keys that change the job's output. Upstream jobs are not repeated
in it: when an upstream output is rewritten, Snakemake reruns its consumers by file time.
The tokenizer slice is the exception: it names the trained run (model.pt and every code file
carry its hash), so the slices of its evaluations contain it.

Trained second-stage models and understanding heads have two identities: `*_training` (what
the checkpoint holds: its hash is checked on resume) and `*_job` (training + how it is
evaluated). Changing only an evaluation setting reruns the job, which finds its finished
checkpoint and re-evaluates without retraining.

docs/config_changes.md lists, for each config key, which jobs a change reruns;
tests/test_dag_faults.py checks that table against Snakemake's own dry run.
"""

from __future__ import annotations

from typing import Any

from lgvq.config import tokenizer_job_slice
from lgvq.manifest import config_hash
from lgvq.sections import head_settings

__all__ = ["data", "text_cache", "tokenizer", "feature_extractor", "reconstruction", "text_alignment",
           "labelmap_vq", "stage2_training", "stage2_job", "downstream_training", "downstream_job", "reference",
           "tables", "job_hash"]

job_hash = config_hash


def data(cfg: dict[str, Any], dataset: str) -> dict[str, Any]:
    """`prepare_data`, `dataset_stats`: which images and captions the dataset holds."""
    ds = cfg["datasets"][dataset]
    # A prepared split at the training resolution holds the same pixels, but prepare_data must re-run
    # to write it: it enters the hash only when on, at its settings.
    resized = ({"resized": {k: ds[k] for k in ("image_size", "resize_mode", "jpeg_draft")}}
               if ds.get("prepare_resized") else {})
    return {"dataset_name": dataset, **{k: ds[k] for k in ("source", "root", "synth")}, **resized}


def text_cache(cfg: dict[str, Any], dataset: str) -> dict[str, Any]:
    """`text_cache`: the captions, encoded by the configured text encoder."""
    return {"data": data(cfg, dataset), "text_encoder": cfg["text_encoder"]}


def tokenizer(cfg: dict[str, Any], dataset: str, name: str, variant: str, seed: int) -> dict[str, Any]:
    """`train_tokenizer`, `encode_codes`: one trained tokenizer run."""
    return tokenizer_job_slice(cfg, dataset, name, variant, seed)


def _images(cfg: dict[str, Any], dataset: str) -> dict[str, Any]:
    ds = cfg["datasets"][dataset]
    return {"data": data(cfg, dataset), "image_size": ds["image_size"], "resize_mode": ds["resize_mode"]}


# The seed of the extractor's own images (eval.shapes_cnn_images) is the dataset's synth seed plus this: another
# draw than the dataset's own, and the same images for every run of a config.
EXTRACTOR_SEED_OFFSET = 7919


def drawn_extractor_images(cfg: dict[str, Any], dataset: str) -> dict[str, Any]:
    """What the extractor's own images are drawn with (eval.shapes_cnn_images > 0): all that decides them."""
    ds = cfg["datasets"][dataset]
    synth = ds["synth"]
    return {"n": cfg["eval"]["shapes_cnn_images"], "size": synth["size"], "seed": synth["seed"] + EXTRACTOR_SEED_OFFSET,
            "text_variant": bool(synth["text_variant"] or ds["source"] == "shapes-text")}


def feature_extractor(cfg: dict[str, Any], dataset: str) -> dict[str, Any]:
    """`train_feature_extractor` (shapes-cnn): trained on the train split's images, or on
    `eval.shapes_cnn_images` images drawn for it (0 keeps the hash of before the key existed). Drawn images
    depend on what draws them (`drawn_extractor_images`) and the training resolution, not on the dataset's size."""
    ev, ds = cfg["eval"], cfg["datasets"][dataset]
    if ev.get("shapes_cnn_images"):
        images = {"drawn": drawn_extractor_images(cfg, dataset), "image_size": ds["image_size"],
                  "resize_mode": ds["resize_mode"]}
    else:
        images = _images(cfg, dataset)
    return {"images": images, "epochs": ev["shapes_cnn_epochs"], "seed": ev["mask_eval_seed"]}


def _fid(cfg: dict[str, Any], dataset: str) -> dict[str, Any]:
    """How an FID is computed: the extractor (a shapes-cnn model is an input file, so only its
    name counts here), its weights, and how many test images are scored."""
    ev = cfg["eval"]
    return {"extractor": ev["fid_extractor"],
            "inception_weights": ev["inception_weights"] if ev["fid_extractor"] == "inception" else None,
            "eval_images": cfg["datasets"][dataset]["eval_images"]}


def reconstruction(cfg: dict[str, Any], dataset: str, name: str, variant: str, seed: int) -> dict[str, Any]:
    """`eval_reconstruction`: FID/PSNR/SSIM on the first `eval_images` test images + codebook usage."""
    return {"run": tokenizer(cfg, dataset, name, variant, seed), "fid": _fid(cfg, dataset)}


def text_alignment(cfg: dict[str, Any], dataset: str, name: str, variant: str, seed: int) -> dict[str, Any]:
    """`eval_text_alignment`: masked-word recall, word-code similarity, retrieval (whole splits)."""
    return {"run": tokenizer(cfg, dataset, name, variant, seed), "mask_seed": cfg["eval"]["mask_eval_seed"]}


def tokenizer_grid(cfg: dict[str, Any], dataset: str) -> list[int]:
    """The code grids of the tokenizers semantic synthesis runs on (they share one label-map VQ)."""
    from lgvq.pipeline.plan import task_runs

    size = cfg["datasets"][dataset]["image_size"]
    from lgvq.stage2.registry import label_map_tasks

    names = {r.tokenizer for task in label_map_tasks() for r in task_runs(cfg, "stage2", task)
             if r.dataset == dataset} or set(cfg["tokenizers"])
    return sorted({size // 2 ** (len(cfg["tokenizers"][n]["params"].get("ch_mult", (1, 1, 2, 2, 4))) - 1)
                   for n in names})


def labelmap_vq(cfg: dict[str, Any], dataset: str) -> dict[str, Any]:
    """`labelmap_vq`: semantic synthesis' conditioning stage (one per dataset, single process)."""
    settings = {k: v for k, v in head_settings(cfg, "stage2", data_parallel=False).items()
                if k not in ("cond_dropout", "diffusion_loss")}  # the text-to-image generators' keys
    from lgvq.stage2.labelmap_vq import DEFAULT_CH

    ch = cfg["stage2"]["labelmap_ch"]
    settings.update({"labelmap_ch": ch} if ch != DEFAULT_CH else {})  # the default: the hash of before
    return {"images": _images(cfg, dataset), "stage2": settings,  # (null captions: the text-to-image generators')
            "tokenizer_grids": tokenizer_grid(cfg, dataset), "seed": cfg["eval"]["mask_eval_seed"]}


def stage2_training(cfg: dict[str, Any], task: str, dataset: str, name: str, variant: str, seed: int) -> dict[str, Any]:
    """What a second-stage checkpoint holds: the generator trained on one run's codes."""
    from lgvq.stage2.registry import STAGE2_TASKS

    settings = head_settings(cfg, "stage2")
    if not STAGE2_TASKS.get(task).supports_guidance:
        settings.pop("cond_dropout", None)  # only the text-to-image tasks train with null captions
    if not STAGE2_TASKS.get(task).discrete_diffusion:
        settings.pop("diffusion_loss", None)  # only a discrete diffusion trains with it
    return {"tokenizer": tokenizer(cfg, dataset, name, variant, seed), "stage2": settings, "task": task}


def scores_caption_attributes(cfg: dict[str, Any], task: str) -> bool:
    """Whether a second-stage job scores its samples against their captions (attribute accuracy, caption
    following): a task that `scores_caption_attributes`, read by the shapes-cnn classifier (embedded data)."""
    from lgvq.stage2.registry import STAGE2_TASKS

    return STAGE2_TASKS.get(task).scores_caption_attributes and cfg["eval"]["fid_extractor"] == "shapes-cnn"


def samples_per_caption(cfg: dict[str, Any], task: str) -> int:
    """Draws per test caption a second-stage job takes: stage2.samples_per_caption where they are scored, else 1."""
    return cfg["stage2"]["samples_per_caption"] if scores_caption_attributes(cfg, task) else 1


def stage2_job(cfg: dict[str, Any], task: str, dataset: str, name: str, variant: str, seed: int) -> dict[str, Any]:
    """`stage2`: training, then sampling for the first `eval_images` test conditions and FID."""
    from lgvq.stage2.registry import STAGE2_TASKS

    spec = STAGE2_TASKS.get(task)
    guidance = cfg["stage2"]["guidance_scale"] if spec.supports_guidance else 1.0
    samples = samples_per_caption(cfg, task)  # extra draws per test caption: only where they are scored
    cut = cfg["stage2"]["truncation_rate"] if spec.discrete_diffusion else 1.0
    sampler = cfg["stage2"]["diffusion_sampler"] if spec.discrete_diffusion else "posterior"
    return {"training": stage2_training(cfg, task, dataset, name, variant, seed), "fid": _fid(cfg, dataset),
            "sample_seed": cfg["eval"]["mask_eval_seed"],
            **({"guidance_scale": guidance} if guidance != 1.0 else {}),  # 1: the hash of before
            **({"samples_per_caption": samples} if samples != 1 else {}),
            **({"truncation_rate": cut} if cut != 1.0 else {}),
            **({"diffusion_sampler": sampler} if sampler != "posterior" else {}),
            # the diffusion's last step keeps the visible codes (lgvq/stage2/diffusion.py): its samples of before
            # (drawn again everywhere) are not reused; its checkpoint is
            **({"keeps_visible_codes": True} if spec.discrete_diffusion else {})}


def downstream_training(cfg: dict[str, Any], task: str, dataset: str, name: str, variant: str,
                        seed: int) -> dict[str, Any]:
    """What an understanding head's checkpoint holds."""
    return {"tokenizer": tokenizer(cfg, dataset, name, variant, seed),
            "downstream": head_settings(cfg, "downstream", task=task), "task": task}


def downstream_job(cfg: dict[str, Any], task: str, dataset: str, name: str, variant: str, seed: int) -> dict[str, Any]:
    """`downstream`: the head is evaluated on the whole test split with settings of its own section."""
    return {"training": downstream_training(cfg, task, dataset, name, variant, seed)}


def reference(cfg: dict[str, Any], name: str, dataset: str, tokenizer: str | None, seed: int) -> dict[str, Any]:
    """A baseline/ceiling job (lgvq.pipeline.references): the images it reads, the FID setting when it scores
    images, the text encoder when it reads the text cache, the evaluation seed (masks, shuffles, random
    codebooks), which text-to-image generators' columns its records fill, and the tokenizer
    run of a per-tokenizer one."""
    from lgvq.pipeline.references import get_reference

    ref = get_reference(name)
    out: dict[str, Any] = {"reference": name, "images": _images(cfg, dataset), "seed": cfg["eval"]["mask_eval_seed"]}
    if "extractor" in ref.needs:
        out["fid"] = _fid(cfg, dataset)
    if "text" in ref.needs:
        out["text_encoder"] = cfg["text_encoder"]
    if "text_to_image" in ref.kinds:
        from lgvq.stage2.registry import tasks_by_table

        out["t2i_generators"] = [t for t in tasks_by_table()["text_to_image"] if t in cfg["stage2"]["tasks"]]
    if "captioning" in ref.kinds:
        out["eval_limit"] = cfg["downstream"]["eval_limit"]  # the test images the captioning rows score
    if tokenizer is not None:
        out["run"] = tokenizer_job_slice(cfg, dataset, tokenizer, "base", seed)
    if ref.head_seeds:  # a trained head: the settings of the task it controls for, and its own seed
        (task,) = ref.kinds
        out["downstream"], out["head_seed"] = head_settings(cfg, "downstream", task=task), seed
    return out


def tables(cfg: dict[str, Any]) -> dict[str, Any]:
    """`tables`, `table`, `report`: cheap, and they print the experiment's name and seeds, so the
    whole config counts, except what the cluster is asked for (`resources`: no output depends on it)."""
    return {k: v for k, v in cfg.items() if k != "resources"}
