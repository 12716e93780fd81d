"""The second-stage tasks: one `Stage2Task` object per task, one file per task.

A task says what conditions its generator, which generator it trains, how it samples, and which
table its records fill; the pipeline (lgvq.pipeline.stage2) does the rest the same way for every
task: load the codes, train in the one training loop, draw one sample per test condition, decode
with the tokenizer, score (FID; attribute accuracy for a task that `scores_caption_attributes`)
and write metrics.json + the manifest. Everything that lists stage-2 tasks is derived from
`STAGE2_TASKS`: the `s2task` wildcard, `lgvq stage2 run --task`, the config check of
`stage2.tasks` / `stage2.tokenizers` / `datasets.<n>.stage2_tasks`, and the plan's table -> tasks
mapping (`tasks_by_table`).

To add one: a file with a `Stage2Task` subclass, registered under its name: built in, a line in
`STAGE2_TASKS` below; outside `lgvq/`, `@STAGE2_TASKS.register("name")` in a module listed under
the config's `plugins:`. A task fills a paper table (`table_id`) or declares its own `table`
(whose id is then its `table_id`).

This module and the task files import no torch at module level: the Snakefile reads the names
and tables while it builds the DAG. Torch is imported inside the methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from lgvq.registry import Registry

if TYPE_CHECKING:
    from lgvq.settings import Stage2Settings, TextEncoderSettings
    from lgvq.tables.paper import Table


@dataclass
class Stage2Context:
    """What a task's `conditions` and `build` receive (the pipeline fills it): typed settings
    (lgvq.settings), never the raw config."""

    settings: Stage2Settings                # the `stage2` section (width, layers, heads, steps, sampling)
    dataset: str                            # config key of the dataset
    train_records: list[Any]                # the train split's records (captions, label maps)
    test_records: list[Any]                 # the first `eval_images` test records: one sample each
    grid: tuple[int, int]                   # the tokenizer's code grid (h, w)
    n_codes: int                            # its codebook size
    device: Any
    text_cache: Callable[[], Any]           # loads the dataset's text cache (checked against the config)
    label_map_vq: Callable[[], Any]         # loads the dataset's label-map VQ: (model, meta)
    label_map: Callable[[Any], Any]         # a record's label map (class ids) at the dataset's image size
    val_records: list[Any] = field(default_factory=list)   # the val records whose loss the job logs (may be empty)


def _no_condition(records: list[Any], captions: list[str]) -> None:
    return None


@dataclass
class Conditions:
    """What conditions the generator: `of(records, one caption per record)` -> the batch's
    condition (None, code prefixes, text features), and the sizes the generator is built with."""

    of: Callable[[list[Any], list[str]], Any] = _no_condition
    text_dim: int = 0                   # width of the text features (text-conditioned tasks)
    text_len: int = 0                   # their length in tokens
    n_classes: int = 0                  # label-code vocabulary (semantic synthesis)
    text_encoder: dict[str, Any] | None = None   # the text cache's description, for the record's labels


class Stage2Task:
    """Subclass per task. The defaults are unconditional generation with `CodeGPT`: a task
    overrides what differs. The generator is a `CodeGenerator` module (`net`, and `cond` for what
    turns a condition into the generator's input), so every task's checkpoint has the same layout."""

    name: str = ""
    table_id: str = ""                  # the table its records fill (the record's `kind`)
    table: Table | None = None          # a plug-in's own table (id == table_id); None: a paper table
    metric_tag: str | None = None       # tags the metrics when two tasks fill one table (text_to_image)
    needs_label_maps: bool = False      # reads label maps (left out of datasets without them)
    scores_caption_attributes: bool = False  # samples are scored against their captions (shapes-cnn)
    supports_guidance: bool = False     # trains with stage2.cond_dropout and samples with stage2.guidance_scale
    discrete_diffusion: bool = False    # trains with stage2.diffusion_loss, samples with stage2.truncation_rate and
                                        # stage2.diffusion_sampler

    # --- conditions and model -----------------------------------------------------------------------
    def conditions(self, ctx: Stage2Context) -> Conditions:
        return Conditions()

    def build(self, ctx: Stage2Context, cond: Conditions) -> Any:
        """The generator (built right after the training seed is set, so its initialisation is seeded:
        the network first, then the condition module)."""
        from lgvq.stage2.model import CodeGenerator

        net = self.network(ctx, cond)
        return CodeGenerator(net, ctx.grid, self.condition_module(ctx, cond))

    def network(self, ctx: Stage2Context, cond: Conditions) -> Any:
        """The generator over the code sequence: CodeGPT with `prefix_length` condition positions."""
        from lgvq.stage2.gpt import CodeGPT

        return CodeGPT(ctx.n_codes, ctx.grid[0] * ctx.grid[1], n_prefix=self.prefix_length(ctx, cond),
                       **generator_size(ctx.settings))

    def condition_module(self, ctx: Stage2Context, cond: Conditions) -> Any:
        """What turns a condition into prefix embeddings (trained with the generator), or None."""
        return None

    def prefix_length(self, ctx: Stage2Context, cond: Conditions) -> int:
        """Condition positions before the codes (CodeGPT tasks)."""
        return 0

    def prefix(self, model: Any, cond: Any) -> Any:
        """The condition as prefix embeddings (B, n_prefix, width), or None."""
        return None

    # --- training and sampling ------------------------------------------------------------------------
    def loss(self, model: Any, codes: Any, cond: Any) -> Any:
        """Training loss of a batch: codes (B, h, w), its condition."""
        return model.net.loss(codes.flatten(1), self.prefix(model, cond))

    def drop_conditions(self, cond: Any, drop: Any) -> Any:
        """The batch's condition with the rows where `drop` (B,) is True replaced by the null condition
        (a task that `supports_guidance`; stage2.cond_dropout > 0)."""
        raise NotImplementedError(f"task '{self.name}' has no null condition (supports_guidance is False)")

    def given(self, real: Any) -> Any:
        """Codes of the real test image the sample must keep, as a raster-order prefix (B, k), or None."""
        return None

    def generate(self, model: Any, n: int, cond: Any, given: Any, generator: Any, device: Any,
                 s: Stage2Settings) -> Any:
        """n samples (n, h, w) for a batch of conditions."""
        flat = model.net.sample(n, prefix=self.prefix(model, cond), given=given, temperature=s.temperature,
                                top_k=s.top_k, top_p=s.top_p, generator=generator, device=device,
                                fast=s.fast_path)
        return flat.view(n, *model.grid)

    def describe(self, model: Any, s: Stage2Settings) -> str:
        """The record's `generator` label."""
        guidance = (f"; {s.cond_dropout:.0%} null captions in training, guidance scale {s.guidance_scale:g}"
                    if self.supports_guidance and (s.cond_dropout or s.guidance_scale != 1.0) else "")
        return (f"{type(model.net).__name__}: width {s.width}, {self.layers(s)} layers, {s.heads} heads, "
                f"{s.steps} steps (batch {s.batch_size}){guidance}")

    # --- what `lgvq plan estimate` prices -----------------------------------------------------------
    def condition_tokens(self, text: TextEncoderSettings, grid: int) -> int:
        """Condition positions the generator attends to beside the `grid` code positions (`text`: the
        captions' encoder, whose max_length a text-conditioned task attends to)."""
        return 0

    def layers(self, s: Stage2Settings) -> int:
        return s.layers

    def sampling_passes(self, s: Stage2Settings) -> int:
        """Forward passes over the whole sequence per sample (KV-cached AR: one; diffusion: its steps)."""
        return 1


def generator_size(s: Stage2Settings) -> dict[str, Any]:
    """The generator's size from the `stage2` section."""
    return dict(width=s.width, layers=s.layers, heads=s.heads, dropout=s.dropout)


STAGE2_TASKS = Registry("second-stage task", "stage2.tasks", {
    "unconditional": "lgvq.stage2.unconditional:UnconditionalTask",
    "completion": "lgvq.stage2.completion:CompletionTask",
    "semantic": "lgvq.stage2.semantic:SemanticTask",
    "t2i_diffusion": "lgvq.stage2.t2i_diffusion:TextToImageDiffusionTask",
    "t2i_ar": "lgvq.stage2.t2i_ar:TextToImageARTask",
})


def tasks_by_table() -> dict[str, tuple[str, ...]]:
    """Table id -> the registered tasks whose records fill it, in registration order."""
    out: dict[str, tuple[str, ...]] = {}
    for name in STAGE2_TASKS.names():
        table = STAGE2_TASKS.get(name).table_id
        out[table] = (*out.get(table, ()), name)
    return out


def label_map_tasks() -> tuple[str, ...]:
    """The registered tasks that read label maps (`needs_label_maps`: semantic synthesis), in registration order."""
    return tuple(n for n in STAGE2_TASKS.names() if STAGE2_TASKS.get(n).needs_label_maps)


def own_tables() -> dict[str, Table]:
    """The tables registered tasks declare themselves (plug-ins), by id."""
    out: dict[str, Table] = {}
    for name in STAGE2_TASKS.names():
        task = STAGE2_TASKS.get(name)
        if task.table is not None:
            if task.table.id != task.table_id:
                raise KeyError(f"second-stage task '{name}' declares a table with id '{task.table.id}' but fills "
                               f"'{task.table_id}': make them equal")
            out[task.table.id] = task.table
    return out
