"""Typed, frozen views of the validated config's sections (issue 18: lower layers never index the raw dict).

`load_config` returns the validated dict (the job hashes and the Snakefile read it as data); the pipeline
turns the slice a library layer needs into one of these once, at the edge of that layer, and the layer
reads attributes: `ctx.settings.width`, not `cfg["downstream"]["width"]`. A key the schema has and the
dataclass lacks (or the reverse) is a `ConfigError` naming the section, so the two cannot drift apart
silently (tests/test_settings.py checks every shipped config).

    stage2_settings(cfg)       -> Stage2Settings        (the `stage2` section)
    downstream_settings(cfg, task) -> DownstreamSettings (the `downstream` section, `task`'s `per_task` applied)
    text_encoder_settings(cfg) -> TextEncoderSettings   (the `text_encoder` section)
    dataset_settings(cfg, n)   -> DatasetSettings       (the `datasets.<n>` entry)
    data_settings(cfg)         -> DataSettings          (the `data` section: the input pipeline)
    train_settings(cfg)        -> TrainSettings         (the `train` section: tokenizer training)
    lg_settings(cfg)           -> LGSettings            (the `lg` section: the language-guided module's size)
    eval_settings(cfg)         -> EvalSettings          (the `eval` section)
    tokenizer_settings(cfg, n) -> TokenizerSettings     (the `tokenizers.<n>` entry)

This module imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, Mapping, TypeVar

from lgvq.config import ConfigError
from lgvq.sections import task_section

S = TypeVar("S")


def _frozen(value: Any) -> Any:
    """Nested containers read-only too: lists -> tuples, dicts -> mapping proxies."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


def thawed(value: Any) -> Any:
    """A frozen setting as the plain containers the config had (mapping proxies -> dicts, tuples -> lists):
    for a constructor that takes the user's nested params as given (a YAML/JSON config holds no tuples)."""
    if isinstance(value, Mapping):
        return {k: thawed(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thawed(v) for v in value]
    return value


def from_section(cls: type[S], raw: Mapping[str, Any], where: str, **extra: Any) -> S:
    """`cls(**raw)` when the section's keys are exactly the dataclass's fields (besides `extra`)."""
    names = {f.name for f in fields(cls)} - set(extra)  # type: ignore[arg-type]
    missing, unknown = sorted(names - set(raw)), sorted(set(raw) - names)
    if missing or unknown:
        raise ConfigError(f"{where}: the validated section and lgvq.settings.{cls.__name__} disagree "
                          f"(missing: {', '.join(missing) or '-'}; not in the dataclass: {', '.join(unknown) or '-'})")
    return cls(**{k: _frozen(v) for k, v in raw.items()}, **extra)


@dataclass(frozen=True)
class TextEncoderSettings:
    name: str
    path: str | None
    max_length: int          # caption tokens (the text cache's length)


@dataclass(frozen=True)
class DataSettings:
    loader_workers: int | str    # DataLoader worker processes; "auto" = the job's threads minus one
    prefetch: int                # batches each worker decodes ahead


@dataclass(frozen=True)
class DatasetSettings:
    key: str                 # the dataset's config key
    source: str
    synth: Mapping[str, Any] | None
    image_size: int
    resize_mode: str         # "resize" or "center_crop"
    paper_column: str | None
    eval_images: int
    lg_weights: Mapping[str, float]
    root: str | None
    cache_dir: str | None
    jpeg_draft: bool
    prepare_resized: bool
    stage2_tasks: tuple[str, ...] | None
    downstream_tasks: tuple[str, ...] | None


@dataclass(frozen=True)
class TrainSettings:
    """The tokenizers' training (stage 1)."""

    steps: int
    batch_size: int
    micro_batch: int | None      # gradient accumulation: micro-batches of this size
    base_lr: float
    lr: float | None             # None: base_lr x batch_size x GPUs (the authors' rule)
    betas: tuple[float, float]
    ckpt_every: int
    fast_path: bool
    cpu_bf16: str
    compile: bool
    gpus: int
    log_every: int
    val_every: int
    val_items: int
    val_max_points: int          # the most validation points a run logs (0 = no cap): lgvq.train.loop


@dataclass(frozen=True)
class LGSettings:
    layers: int
    heads: int
    dropout: float
    mtp_input: str = "paper"  # paper | leak_free: what the masked-text decoder reads in training


@dataclass(frozen=True)
class EvalSettings:
    fid_extractor: str           # shapes-cnn | inception | none
    inception_weights: str | None
    shapes_cnn_epochs: int
    shapes_cnn_images: int       # 0: the train split; N: N images the embedded generator draws for it
    mask_eval_seed: int


@dataclass(frozen=True)
class ReferencesSettings:
    enabled: bool
    skip: tuple[str, ...]
    tokenizers: tuple[str, ...] | None  # None: every tokenizer of the table
    budget_note: str | None


@dataclass(frozen=True)
class TokenizerSettings:
    """One `tokenizers.<key>` entry."""

    key: str
    class_: str                  # the entry's `class` (a registered name or module:Class)
    params: Mapping[str, Any]
    checkpoint: str | None       # a frozen checkpoint evaluated instead of training
    steps: int | None            # None: train.steps
    init_from: str | None        # fine-tune from this checkpoint
    variants: tuple[str, ...]


@dataclass(frozen=True)
class TrainedStageSettings:
    """What the second stage and the understanding heads share: which jobs run, how they train, the
    transformer's size."""

    enabled: bool
    tasks: tuple[str, ...]
    tokenizers: Mapping[str, tuple[str, ...]]
    steps: int
    batch_size: int
    lr: float
    gpus: int
    ckpt_every: int
    fast_path: bool
    cpu_bf16: str
    val_every: int
    val_items: int
    val_max_points: int          # the most validation points a run logs (0 = no cap): lgvq.train.loop
    width: int
    layers: int
    heads: int
    dropout: float


@dataclass(frozen=True)
class Stage2Settings(TrainedStageSettings):
    diffusion_steps: int
    diffusion_layers: int | None   # None: `layers`
    labelmap_codes: int
    labelmap_ch: int
    temperature: float
    top_k: int | None
    top_p: float | None
    cond_dropout: float            # text-to-image: captions replaced by the null caption in training
    guidance_scale: float          # classifier-free guidance at sampling; 1 = none
    samples_per_caption: int       # text-to-image attribute scoring: draws per test caption
    truncation_rate: float         # discrete diffusion sampling: p(x_0 | x_t) cut at this cumulative probability
    diffusion_sampler: str         # discrete diffusion sampling: posterior (VQ-Diffusion) | purity (most confident first)
    diffusion_loss: str            # discrete diffusion training: x0 (cross-entropy) | vlb (the variational bound) | masked


@dataclass(frozen=True)
class DownstreamSettings(TrainedStageSettings):
    max_words: int
    beam: int
    grounding_head: str
    codebook_norm: str
    frontend_conv: int
    max_answers: int
    eval_limit: int | None
    gpt2_path: str | None


def stage2_settings(cfg: Mapping[str, Any]) -> Stage2Settings:
    return from_section(Stage2Settings, cfg["stage2"], "stage2")


def downstream_settings(cfg: Mapping[str, Any], task: str | None = None) -> DownstreamSettings:
    """The `downstream` section as `task`'s heads see it: its `per_task` entry applied (None: the shared values)."""
    return from_section(DownstreamSettings, task_section(dict(cfg), "downstream", task), "downstream")


def text_encoder_settings(cfg: Mapping[str, Any]) -> TextEncoderSettings:
    return from_section(TextEncoderSettings, cfg["text_encoder"], "text_encoder")


def data_settings(cfg: Mapping[str, Any]) -> DataSettings:
    return from_section(DataSettings, cfg["data"], "data")


def dataset_settings(cfg: Mapping[str, Any], dataset: str) -> DatasetSettings:
    return from_section(DatasetSettings, cfg["datasets"][dataset], f"datasets.{dataset}", key=dataset)


def train_settings(cfg: Mapping[str, Any]) -> TrainSettings:
    return from_section(TrainSettings, cfg["train"], "train")


def lg_settings(cfg: Mapping[str, Any]) -> LGSettings:
    return from_section(LGSettings, cfg["lg"], "lg")


def eval_settings(cfg: Mapping[str, Any]) -> EvalSettings:
    return from_section(EvalSettings, cfg["eval"], "eval")


def references_settings(cfg: Mapping[str, Any]) -> ReferencesSettings:
    return from_section(ReferencesSettings, cfg["references"], "references")


def tokenizer_settings(cfg: Mapping[str, Any], tokenizer: str) -> TokenizerSettings:
    entry = dict(cfg["tokenizers"][tokenizer])
    entry["class_"] = entry.pop("class")  # `class` is a Python keyword
    return from_section(TokenizerSettings, entry, f"tokenizers.{tokenizer}", key=tokenizer)
