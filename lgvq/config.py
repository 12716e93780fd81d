"""Experiment config: load, validate against config/schema.yaml (filling defaults), and slice.

The same schema is used by the Snakefile (snakemake's `validate`) and by every `lgvq` verb, so a
bad value is reported the same way wherever it enters: a `ConfigError` naming the key path.
Models never see this module: the pipeline slices the config into typed arguments.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators

from lgvq.errors import ConfigError
from lgvq.manifest import config_hash

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "config" / "schema.yaml"

# Which language-guided losses each variant switches on (Table 2's rows are configs, not code paths).
VARIANT_TERMS: dict[str, tuple[str, ...]] = {
    "base": (),
    "gsa": ("gsa",),
    "mtp": ("mtp",),
    "mtp-ras": ("mtp", "ras"),
    "mtp-gsa": ("mtp", "gsa"),
    "lg": ("gsa", "mtp", "ras"),
}


# A dose-response run scales the weights of every term its variant switches on: `lg-x10` is +LG with all three
# LG weights x10. x1 is the plain variant (one run, one name), so a multiplier is never 1 in a name.
DOSE_VARIANT = re.compile(r"^(?P<terms>.+)-x(?P<multiplier>\d+(?:\.\d+)?)$")
# The `{variant}` wildcard's constraint (workflow/rules/common.smk): the named variants and their dose forms.
VARIANT_PATTERN = ("|".join(re.escape(v) for v in sorted(VARIANT_TERMS, key=len, reverse=True))
                   + r"|(?:" + "|".join(re.escape(v) for v in VARIANT_TERMS if v != "base") + r")-x\d+(?:\.\d+)?")


def multiplier_text(multiplier: float) -> str:
    """The canonical spelling of a multiplier in a variant name: 10 -> "10", 0.5 -> "0.5"."""
    return f"{float(multiplier):.6f}".rstrip("0").rstrip(".")


def dose_variant(variant: str, multiplier: float) -> str:
    """The variant whose LG weights are `multiplier` times `variant`'s: x0 is the base, x1 the variant itself."""
    if variant not in VARIANT_TERMS or variant == "base":
        raise ConfigError(f"dose_variant: '{variant}' has no LG weights to scale (known: {', '.join(VARIANT_TERMS)})")
    if multiplier == 0:
        return "base"
    if multiplier < 0 or multiplier_text(multiplier) in ("0", ""):
        raise ConfigError(f"dose_variant: multiplier {multiplier} must be > 0 and at least 1e-6")
    return variant if float(multiplier) == 1.0 else f"{variant}-x{multiplier_text(multiplier)}"


def parse_variant(variant: str) -> tuple[str, float]:
    """(the named variant whose LG terms are on, the multiplier of their weights): "lg-x10" -> ("lg", 10.0),
    "mtp" -> ("mtp", 1.0). A ConfigError for a name that is neither, or a non-canonical dose name ("lg-x1",
    "lg-x10.0"): each run has exactly one name, so its files and its hash are found under one path."""
    if variant in VARIANT_TERMS:
        return variant, 1.0
    m = DOSE_VARIANT.match(variant)
    if m and m["terms"] in VARIANT_TERMS and m["terms"] != "base":
        multiplier = float(m["multiplier"])
        if multiplier > 0 and dose_variant(m["terms"], multiplier) == variant:
            return m["terms"], multiplier
        raise ConfigError(f"variant '{variant}': write it as '{dose_variant(m['terms'], multiplier)}'"
                          if multiplier > 0 else f"variant '{variant}': a multiplier must be > 0 (x0 is 'base')")
    raise ConfigError(f"unknown variant '{variant}' (known: {', '.join(VARIANT_TERMS)}, or <variant>-x<multiplier> "
                      "such as lg-x10)")


def _with_defaults(validator_class):
    """A validator that fills `default` values in, as snakemake's validate(set_default=True) does."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(Draft202012Validator)


def load_yaml(text: str) -> Any:
    """YAML through libyaml's C parser when PyYAML has it (every job validates its config against the
    schema: ~0.1 s per job with the pure-Python parser, 0.01 s with libyaml), else the Python one."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def load_schema() -> dict[str, Any]:
    return load_yaml(SCHEMA_PATH.read_text())


def _fill_ref_defaults(cfg: dict[str, Any], schema: dict[str, Any]) -> None:
    # `default` behind a $ref is not applied by the properties hook above; fill the one we use.
    default_weights = schema["$defs"]["lg_weights"]["default"]
    for entry in cfg.get("datasets", {}).values():
        if isinstance(entry, dict):
            entry.setdefault("lg_weights", dict(default_weights))
            for k, v in default_weights.items():
                if isinstance(entry["lg_weights"], dict):
                    entry["lg_weights"].setdefault(k, v)


def validate_config(cfg: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Validate (and fill defaults in) a config dict; raise ConfigError naming the key."""
    schema = load_schema()
    cfg = copy.deepcopy(cfg)
    _fill_ref_defaults(cfg, schema)
    errors = sorted(_Validator(schema).iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for err in errors[:10]:
            key = ".".join(str(p) for p in err.absolute_path) or "<top level>"
            lines.append(f"  {key}: {err.message}{_hint(err)}")
        raise ConfigError(f"invalid config {source}:\n" + "\n".join(lines))
    _load_plugins_and_check_tasks(cfg, source)
    _check_cross_references(cfg, source)
    _check_guidance(cfg, source)
    _expand_paths(cfg, source)
    return cfg


def _check_guidance(cfg: dict[str, Any], source: str) -> None:
    """Guidance samples against the null caption: a generator never trained on it has no meaning there."""
    s2 = cfg["stage2"]
    if s2["guidance_scale"] != 1.0 and s2["cond_dropout"] == 0:
        raise ConfigError(f"invalid config {source}:\n  stage2.guidance_scale: {s2['guidance_scale']} needs "
                          "stage2.cond_dropout > 0 (the generator must learn the null caption it is guided against)")


def _load_plugins_and_check_tasks(cfg: dict[str, Any], source: str) -> None:
    """Import the config's plug-in modules, then check every task, tokenizer and text-encoder name
    against the registries (the schema cannot list names that plug-ins add). A tokenizer's `class`
    and an import-path text encoder are only checked for their form here (importing them means
    torch, and a dry run may plan a config whose package is not installed yet); preflight and the
    jobs resolve them."""
    from lgvq.downstream.registry import HEADS
    from lgvq.registry import load_plugins
    from lgvq.stage2.registry import STAGE2_TASKS
    from lgvq.text.registry import check_name as check_text_encoder
    from lgvq.tokenizers.registry import check_form

    try:
        load_plugins(cfg["plugins"])
        for name, entry in cfg["tokenizers"].items():
            check_form(entry["class"], f"tokenizers.{name}.class")
        check_text_encoder(cfg["text_encoder"]["name"], "text_encoder.name")
        HEADS.check(cfg["downstream"]["tasks"], "downstream.tasks")
        HEADS.check(cfg["downstream"]["tokenizers"], "downstream.tokenizers")
        HEADS.check(cfg["downstream"]["per_task"], "downstream.per_task")
        STAGE2_TASKS.check(cfg["stage2"]["tasks"], "stage2.tasks")
        STAGE2_TASKS.check(cfg["stage2"]["tokenizers"], "stage2.tokenizers")
        for name, ds in cfg["datasets"].items():
            HEADS.check(ds.get("downstream_tasks") or [], f"datasets.{name}.downstream_tasks")
            STAGE2_TASKS.check(ds.get("stage2_tasks") or [], f"datasets.{name}.stage2_tasks")
    except ConfigError as e:
        raise ConfigError(f"invalid config {source}:\n  {e}") from e


def _hint(err) -> str:
    """What to write instead, for the mistakes whose schema message does not say it."""
    if err.validator == "type" and isinstance(err.instance, str):
        try:
            float(err.instance)
        except ValueError:
            return ""
        if err.instance.strip().lstrip("+-").isdigit():  # only a quoted integer is read as a string
            return f" (a quoted number: write it without quotes, e.g. {int(err.instance)})"
        # PyYAML follows YAML 1.1: a float needs a dot, so `2e-4` is read as the string '2e-4'.
        return f" (YAML reads {err.instance} as a string: write it with a dot, e.g. {float(err.instance)!r})"
    if err.validator == "type" and isinstance(err.instance, bool) and err.validator_value == "string":
        # PyYAML reads an unquoted on/off/yes/no as a boolean (cpu_bf16: on | off | auto).
        return f" (YAML reads an unquoted on/off as a boolean: quote it, e.g. \"{'on' if err.instance else 'off'}\")"
    return ""


_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def _path_keys(cfg: dict[str, Any]):
    """(key path, container, field) of every config value that is a local path."""
    for name, ds in cfg["datasets"].items():
        yield f"datasets.{name}.root", ds, "root"
        yield f"datasets.{name}.cache_dir", ds, "cache_dir"
    yield "text_encoder.path", cfg["text_encoder"], "path"
    yield "eval.inception_weights", cfg["eval"], "inception_weights"
    yield "downstream.gpt2_path", cfg["downstream"], "gpt2_path"
    for name, tok in cfg["tokenizers"].items():
        yield f"tokenizers.{name}.checkpoint", tok, "checkpoint"
        yield f"tokenizers.{name}.init_from", tok, "init_from"
        yield f"tokenizers.{name}.params.perceptual_weights", tok.get("params", {}), "perceptual_weights"


def _expand_paths(cfg: dict[str, Any], source: str) -> None:
    """`${VAR}` / `$VAR` in path values come from the environment (e.g. `root: ${LGVQ_DATA}/cub`),
    so one config serves machines whose data live in different places. An unset variable is an
    error naming the key, never an empty path segment."""
    for key, container, field in _path_keys(cfg):
        value = container.get(field)
        if not isinstance(value, str) or "$" not in value:
            continue
        missing = [a or b for a, b in _ENV_VAR.findall(value) if (a or b) not in os.environ]
        if missing:
            raise ConfigError(f"invalid config {source}:\n  {key}: environment variable(s) {', '.join(missing)} "
                              f"not set (value {value!r})")
        container[field] = os.path.expandvars(value)


def _check_cross_references(cfg: dict[str, Any], source: str) -> None:
    abl = cfg.get("ablation", {})
    if abl.get("tokenizer") and abl["tokenizer"] not in cfg["tokenizers"]:
        raise ConfigError(
            f"invalid config {source}:\n  ablation.tokenizer: '{abl['tokenizer']}' is not a key of `tokenizers` "
            f"({', '.join(cfg['tokenizers'])})"
        )
    missing = [s for s in (abl.get("seeds") or []) if s not in cfg["seeds"]]
    if missing:
        raise ConfigError(f"invalid config {source}:\n  ablation.seeds: {missing} not in `seeds` {cfg['seeds']}")
    _check_dose_response(cfg, source)
    for stage in ("stage2", "downstream"):
        if cfg[stage]["width"] % cfg[stage]["heads"]:
            raise ConfigError(f"invalid config {source}:\n  {stage}.heads: {cfg[stage]['heads']} does not divide "
                              f"{stage}.width {cfg[stage]['width']}")
        for task, names in cfg[stage]["tokenizers"].items():
            unknown = [n for n in names if n not in cfg["tokenizers"]]
            if unknown:
                raise ConfigError(f"invalid config {source}:\n  {stage}.tokenizers.{task}: {unknown} not keys of "
                                  f"`tokenizers` ({', '.join(cfg['tokenizers'])})")
    missing = [s for s in cfg["expensive_seeds"] if s not in cfg["seeds"]]
    if missing:
        raise ConfigError(f"invalid config {source}:\n  expensive_seeds: {missing} not in `seeds` {cfg['seeds']}")


def _check_dose_response(cfg: dict[str, Any], source: str) -> None:
    dose = cfg["dose_response"]
    if not dose["enabled"]:
        return
    if dose["tokenizer"] not in cfg["tokenizers"]:
        raise ConfigError(f"invalid config {source}:\n  dose_response.tokenizer: '{dose['tokenizer']}' is not a key of "
                          f"`tokenizers` ({', '.join(cfg['tokenizers'])})")
    if cfg["tokenizers"][dose["tokenizer"]].get("checkpoint"):
        raise ConfigError(f"invalid config {source}:\n  dose_response.tokenizer: '{dose['tokenizer']}' is a frozen "
                          "checkpoint (tokenizers.<t>.checkpoint): it is not trained: no LG weight to scale")
    missing = [s for s in (dose["seeds"] or []) if s not in cfg["seeds"]]
    if missing:
        raise ConfigError(f"invalid config {source}:\n  dose_response.seeds: {missing} not in `seeds` {cfg['seeds']}")
    names: dict[str, float] = {}
    for m in dose["multipliers"]:
        try:
            name = dose_variant("lg", m)
        except ConfigError as e:
            raise ConfigError(f"invalid config {source}:\n  dose_response.multipliers: {e}") from e
        if parse_variant(name)[1] != float(m):  # a variant name spells at most 6 decimals
            raise ConfigError(f"invalid config {source}:\n  dose_response.multipliers: {m} has more than 6 decimals "
                              f"(write {parse_variant(name)[1]:g})")
        if name in names:
            raise ConfigError(f"invalid config {source}:\n  dose_response.multipliers: {m} and {names[name]} both name "
                              f"the run '{name}'")
        names[name] = m


def load_config(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        raw = load_yaml(p.read_text()) if p.suffix in (".yaml", ".yml") else json.loads(p.read_text())
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot parse config {p}: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"config {p} must be a mapping at the top level")
    return validate_config(raw, source=str(p))


def lg_weights_for(cfg: dict[str, Any], dataset: str, variant: str) -> dict[str, float]:
    """The weights of the LG terms a variant switches on (others 0: a zero weight removes the term), times the
    variant's dose multiplier (`lg-x10`: every LG weight of `datasets.<dataset>.lg_weights` x10)."""
    terms, multiplier = parse_variant(variant)
    weights = cfg["datasets"][dataset]["lg_weights"]
    return {term: (float(weights[term]) * multiplier if term in VARIANT_TERMS[terms] else 0.0)
            for term in ("gsa", "mtp", "ras")}


def learning_rate(cfg: dict[str, Any], n_gpus: int = 1) -> float:
    """The authors' rule: lr = accumulate x n_gpus x batch_size x base_lr, unless `train.lr` is set."""
    train = cfg["train"]
    if train["lr"] is not None:
        return float(train["lr"])
    return float(train["base_lr"]) * train["batch_size"] * max(1, n_gpus)


def tokenizer_needs_text(cfg: dict[str, Any], dataset: str, tokenizer: str, variant: str) -> bool:
    """Whether training reads the text cache: an LG variant, or a class whose `needs` declares it
    (VQCT's codebook built from word embeddings). A run that does not is neither retrained nor made
    to wait when the text encoder changes. Asking the class imports it (and torch), LG variants not."""
    if any(w > 0 for w in lg_weights_for(cfg, dataset, variant).values()):
        return True
    from lgvq.tokenizers.registry import tokenizer_needs
    return tokenizer_needs(cfg["tokenizers"][tokenizer]["class"], f"tokenizers.{tokenizer}.class").reads_text


# Bumped when a code change alters what a tokenizer job computes for the same config, so that
# every result built on the old code is rerun (old checkpoints move to superseded/).
# 2: the authors' f_vt and masked-text decoder, beta placement and CVQ anchors as switches.
METHOD_REVISION = 2


# Keys added after the first runs, at the value that trains as before: left out of the hash there, so finished jobs keep it.
HASH_NEUTRAL_VALUES = {
    "cpu_bf16": "off",        # the fp32 jobs
    "cond_dropout": 0,        # no null captions
    "diffusion_loss": "x0",   # the x0 cross-entropy
    "frontend_conv": 0,       # the heads read the codes as tokens, no convolution over the grid
}


# How often and on how many val items the validation curve is measured: like log_every, only the
# log (and the convergence verdict read off it) depends on them; the training is bit-identical
# (lgvq.train.loop restores every RNG after validating), so no checkpoint is invalidated.
VALIDATION_KEYS = ("val_every", "val_items", "val_max_points")


def hash_neutral(key: str, value: Any) -> bool:
    """Whether a setting is at its HASH_NEUTRAL_VALUES value (left out of the job hashes)."""
    return key in HASH_NEUTRAL_VALUES and value == HASH_NEUTRAL_VALUES[key]


def tokenizer_job_slice(cfg: dict[str, Any], dataset: str, tokenizer: str, variant: str, seed: int) -> dict[str, Any]:
    """Everything that determines a trained tokenizer; its hash names the checkpoint's config."""
    require(cfg, dataset=dataset, tokenizer=tokenizer)
    ds = cfg["datasets"][dataset]
    weights = lg_weights_for(cfg, dataset, variant)
    return {
        # jpeg_draft changes the pixels, but only when on (so turning it on is the only hash change).
        "dataset": {k: ds[k] for k in ("source", "root", "synth", "image_size", "resize_mode")}
                   | ({"jpeg_draft": True} if ds.get("jpeg_draft") else {}),
        "dataset_name": dataset,
        # init_from and steps only when set, so adding the keys left every existing job's hash as it was
        "tokenizer": {k: v for k, v in cfg["tokenizers"][tokenizer].items()
                      if not (k in ("init_from", "steps") and v is None)},
        "tokenizer_name": tokenizer,
        "variant": variant,
        "lg_weights": weights,
        # The LG module's and text encoder's settings only where they are used (a base VQ-VAE is the
        # same model whatever lg.layers says).
        # mtp_input only where L_mtp trains and it is not the paper's: adding the key left every +LG job's
        # hash as it was, and a variant without L_mtp (the `gsa` ablation) trains the same either way.
        "lg": ({k: v for k, v in cfg["lg"].items() if not (k == "mtp_input" and (v == "paper" or weights["mtp"] == 0))}
               if any(w > 0 for w in weights.values()) else None),
        "method_revision": METHOD_REVISION,
        "text_encoder": cfg["text_encoder"] if tokenizer_needs_text(cfg, dataset, tokenizer, variant) else None,
        # The fast path (bf16 autocast on CUDA) and torch.compile stay in: they change the numbers, and
        # a table must be able to tell a bf16 run from an fp32 one. How often a checkpoint or a loss-log
        # row is written stays out (resume is exact at any cadence). The number of processes stays in
        # when above 1: it multiplies the global batch.
        # cpu_bf16 only when not off (hash_neutral), so adding the key left every fp32 job's hash as it was.
        "train": {k: v for k, v in cfg["train"].items()
                  if not (k == "gpus" and v == 1) and not hash_neutral(k, v)
                  and k not in ("ckpt_every", "log_every", *VALIDATION_KEYS)},
        "seed": seed,
    }


def require(cfg: dict[str, Any], *, dataset: str | None = None, tokenizer: str | None = None) -> None:
    if dataset is not None and dataset not in cfg["datasets"]:
        raise ConfigError(f"datasets.{dataset}: not in the config (configured: {', '.join(cfg['datasets'])})")
    if tokenizer is not None and tokenizer not in cfg["tokenizers"]:
        raise ConfigError(f"tokenizers.{tokenizer}: not in the config (configured: {', '.join(cfg['tokenizers'])})")


__all__ = ["ConfigError", "load_config", "validate_config", "lg_weights_for", "learning_rate",
           "tokenizer_job_slice", "config_hash", "VARIANT_TERMS", "VARIANT_PATTERN", "dose_variant", "parse_variant"]
