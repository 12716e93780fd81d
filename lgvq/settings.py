"""Typed, frozen views of the validated config's sections (issue 18: lower layers never index the raw dict).

`load_config` returns the validated dict (the job hashes and the Snakefile read it as data); the pipeline
turns the slice a library layer needs into one of these once, at the edge of that layer, and the layer
reads attributes: `ctx.settings.width`, not `cfg["downstream"]["width"]`. A key the schema has and the
dataclass lacks (or the reverse) is a `ConfigError` naming the section, so the two cannot drift apart
silently (tests/test_settings.py checks every shipped config).

    stage2_settings(cfg)       -> Stage2Settings        (the `stage2` section)
    downstream_settings(cfg)   -> DownstreamSettings    (the `downstream` section)
    text_encoder_settings(cfg) -> TextEncoderSettings   (the `text_encoder` section)
    dataset_settings(cfg, n)   -> DatasetSettings       (the `datasets.<n>` entry)
    data_settings(cfg)         -> DataSettings          (the `data` section: the input pipeline)

This module imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, Mapping, TypeVar

from lgvq.config import ConfigError

S = TypeVar("S")


def _frozen(value: Any) -> Any:
    """Nested containers read-only too: lists -> tuples, dicts -> mapping proxies."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
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
    width: int
    layers: int
    heads: int
    dropout: float


@dataclass(frozen=True)
class Stage2Settings(TrainedStageSettings):
    diffusion_steps: int
    diffusion_layers: int | None   # None: `layers`
    labelmap_codes: int
    temperature: float
    top_k: int | None
    top_p: float | None


@dataclass(frozen=True)
class DownstreamSettings(TrainedStageSettings):
    max_words: int
    beam: int
    grounding_head: str
    codebook_norm: str
    max_answers: int
    eval_limit: int | None
    gpt2_path: str | None


def stage2_settings(cfg: Mapping[str, Any]) -> Stage2Settings:
    return from_section(Stage2Settings, cfg["stage2"], "stage2")


def downstream_settings(cfg: Mapping[str, Any]) -> DownstreamSettings:
    return from_section(DownstreamSettings, cfg["downstream"], "downstream")


def text_encoder_settings(cfg: Mapping[str, Any]) -> TextEncoderSettings:
    return from_section(TextEncoderSettings, cfg["text_encoder"], "text_encoder")


def data_settings(cfg: Mapping[str, Any]) -> DataSettings:
    return from_section(DataSettings, cfg["data"], "data")


def dataset_settings(cfg: Mapping[str, Any], dataset: str) -> DatasetSettings:
    return from_section(DatasetSettings, cfg["datasets"][dataset], f"datasets.{dataset}", key=dataset)
