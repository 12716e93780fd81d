"""Checks of everything a config points at, run when the DAG is built (the Snakefile calls
`preflight`) and by `lgvq doctor --config`: data roots, weight files, frozen checkpoints and
registry names. A job that would fail on one of these fails with the same message, but by then
Snakemake has already deleted the outputs it was about to rebuild; here nothing is touched yet.

Torch-free (names are checked against the built-in tables), so parsing the Snakefile stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from lgvq.config import ConfigError
from lgvq.data.registry import GENERATED_SOURCES


def cache_dir_problem(cfg: dict[str, Any], dataset: str) -> str | None:
    """A `cache_dir` on a source that derives no files (checked here and by every job's dataset access)."""
    from lgvq.data.registry import accepts_cache_dir

    entry = cfg["datasets"][dataset]
    if entry.get("cache_dir") and not accepts_cache_dir(entry["source"]):
        return f"datasets.{dataset}.cache_dir: source '{entry['source']}' writes no derived files; remove the key"
    return None


def dataset_problems(cfg: dict[str, Any], dataset: str) -> list[str]:
    """Why the jobs of `dataset` cannot run (empty when they can)."""
    from lgvq.data.registry import list_datasets

    entry = cfg["datasets"][dataset]
    key = f"datasets.{dataset}"
    if entry["source"] not in list_datasets():
        return [f"{key}.source: unknown dataset source '{entry['source']}' (registered: {', '.join(list_datasets())})"]
    out = []
    if entry["root"] is None:
        if entry["source"] not in GENERATED_SOURCES:
            out.append(f"{key}.root: required for source '{entry['source']}' (only the embedded 'shapes' data can "
                       "be generated)")
    elif not Path(entry["root"]).expanduser().is_dir():
        out.append(f"{key}.root: directory not found: {Path(entry['root']).expanduser().resolve()}")
    problem = cache_dir_problem(cfg, dataset)
    return out + ([problem] if problem else [])


def check_dataset(cfg: dict[str, Any], dataset: str) -> None:
    problems = dataset_problems(cfg, dataset)
    if problems:
        raise ConfigError("\n".join(problems))


def _file(key: str, value: str | None, what: str) -> list[str]:
    if value and not Path(value).expanduser().exists():
        return [f"{key}: {what} not found: {Path(value).expanduser().resolve()}"]
    return []


def drawn_extractor_images_problem(cfg: dict[str, Any], dataset: str) -> str | None:
    """Why `eval.shapes_cnn_images` cannot apply to `dataset` (preflight and the extractor job ask), or None."""
    n, entry = cfg["eval"].get("shapes_cnn_images") or 0, cfg["datasets"][dataset]
    if not n or cfg["eval"]["fid_extractor"] != "shapes-cnn":
        return None
    if entry.get("root") is not None or entry["source"] not in GENERATED_SOURCES:
        where = f" read from {entry['root']}" if entry.get("root") is not None else ""
        return (f"eval.shapes_cnn_images: {n} draws images from the embedded data's generator, but dataset "
                f"'{dataset}' is '{entry['source']}'{where}; set it to 0")
    if n < 10:
        return f"eval.shapes_cnn_images: {n} is too few to draw (0 = the train split, or at least 10)"
    return None


def problems(cfg: dict[str, Any]) -> list[str]:
    """Every reason, across the config, that a job of the DAG would fail on what the config names."""
    from lgvq.tokenizers.registry import tokenizer_needs

    out: list[str] = []
    for dataset in cfg["datasets"]:
        out += dataset_problems(cfg, dataset)
    te = cfg["text_encoder"]
    out += _text_encoder_problems(te["name"])
    if te["name"] == "clip" and not te["path"]:
        out.append("text_encoder.path: required for text_encoder.name: clip (a local Hugging Face directory)")
    out += _file("text_encoder.path", te["path"], "text encoder directory")
    ev = cfg["eval"]
    if ev["fid_extractor"] == "inception" and not ev["inception_weights"]:
        out.append("eval.inception_weights: required for eval.fid_extractor: inception (clean-fid's "
                   "inception-2015-12-05.pt), or set eval.fid_extractor: none")
    out += _file("eval.inception_weights", ev["inception_weights"], "Inception weights")
    out += [p for p in (drawn_extractor_images_problem(cfg, d) for d in cfg["datasets"]) if p]
    out += _label_map_problems(cfg)
    if cfg["downstream"]["enabled"] and "captioning" in cfg["downstream"]["tasks"]:
        out += _file("downstream.gpt2_path", cfg["downstream"]["gpt2_path"], "GPT-2 directory")
    for name, entry in cfg["tokenizers"].items():
        key = f"tokenizers.{name}"
        needs = None
        try:  # imports a non-built-in class as every job will: a wrong path stops the run before its first job
            needs = tokenizer_needs(entry["class"], f"{key}.class")
        except ConfigError as e:
            out.append(str(e))
        else:
            if needs.frozen_checkpoint and not entry.get("checkpoint"):
                out.append(f"{key}.checkpoint: required: class '{entry['class']}' declares "
                           "Needs(frozen_checkpoint=True) (it is evaluated frozen, never trained here)")
        if entry.get("checkpoint"):
            out += _file(f"{key}.checkpoint", entry["checkpoint"], "frozen checkpoint")
            if list(entry["variants"]) != ["base"]:
                out.append(f"{key}.variants: a frozen checkpoint has no +LG training; set {key}.variants: [base]")
            if entry.get("init_from"):
                out.append(f"{key}: checkpoint (evaluate frozen) and init_from (fine-tune) exclude each other")
        elif needs is not None and needs.pretrained_weights and not entry.get("init_from"):
            out.append(f"{key}: class '{entry['class']}' adapts a published tokenizer: set {key}.checkpoint "
                       f"(frozen) or {key}.init_from (fine-tune)")
        out += _file(f"{key}.init_from", entry.get("init_from"), "checkpoint to fine-tune from")
        out += _file(f"{key}.params.perceptual_weights", entry.get("params", {}).get("perceptual_weights"),
                     "VGG16 weights")
    return out


def _text_encoder_problems(name: str) -> list[str]:
    """A text encoder that is not built in is imported as the text-cache job will import it (a built-in
    is not: that would import torch and transformers while the DAG is built)."""
    from lgvq.text.registry import TEXT_ENCODERS, text_encoder_class

    if TEXT_ENCODERS.is_builtin(name):
        return []
    try:
        text_encoder_class(name)
    except ConfigError as e:
        return [str(e)]
    return []


def _label_map_problems(cfg: dict[str, Any]) -> list[str]:
    """Semantic synthesis listed by name for a dataset without label maps (a default task list drops it)."""
    from lgvq.pipeline.plan import label_maps

    from lgvq.stage2.registry import label_map_tasks

    s2 = cfg["stage2"]
    needing = [t for t in label_map_tasks() if t in s2["tasks"]]
    if not s2["enabled"] or not needing:
        return []
    return [f"datasets.{name}.stage2_tasks: '{task}' needs label maps, and source '{ds['source']}' at {ds['root']} "
            "has none; remove it from the list" for name, ds in cfg["datasets"].items() for task in needing
            if task in (ds.get("stage2_tasks") or ()) and label_maps(cfg, name) is False]


def preflight(cfg: dict[str, Any]) -> list[str]:
    """Every problem `problems` finds, printed as a warning (the Snakefile calls this when it is
    parsed, before it knows whether the run is a dry one); `refuse_to_start` stops a real run on them.
    A task the plan leaves out (lgvq.pipeline.plan.left_out_tasks) is printed as a note, once."""
    from lgvq.pipeline.plan import left_out_tasks

    for note in left_out_tasks(cfg):
        print(f"lgvq: note: {note}", file=sys.stderr)
    found = problems(cfg)
    if found:
        print("lgvq: warning: a real run of this config stops before its first job:\n  " + "\n  ".join(found),
              file=sys.stderr)
    return found


def refuse_to_start(found: list[str]) -> None:
    """Raise a ConfigError listing the problems (the Snakefile's `onstart`: no job ran, nothing was deleted)."""
    if found:
        raise ConfigError("the config names things that are not there (no job was run, no output deleted):\n  "
                          + "\n  ".join(found))
