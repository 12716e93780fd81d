"""The understanding tasks: one `DownstreamTask` object per task, one file per task.

A task says what a head trains on and how it is scored; the pipeline (lgvq.pipeline.downstream)
does the rest the same way for every task: load the codes, build the shared front end, train in
the one training loop, write metrics.json / predictions.json and the manifest. Everything that
lists tasks is derived from `HEADS`: the `dstask` wildcard, the config check of
`downstream.tasks`, the tables (a task's table id is its name) and the report's examples.

To add one: a file with a `DownstreamTask` subclass, registered under its name: built in, a line
in the built-in table of `HEADS` below; outside `lgvq/`, `@HEADS.register("name")` in a module listed under the
config's `plugins:`. docs/architecture.md walks through a complete example.

This module imports no torch: the Snakefile reads the names while it builds the DAG.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from lgvq.registry import Registry

if TYPE_CHECKING:
    from lgvq.settings import DatasetSettings, DownstreamSettings
    from lgvq.tables.paper import Table

EXAMPLES_SHOWN = 8  # predictions kept in metrics.json for the report


@dataclass
class HeadContext:
    """What a task's `setup` receives: typed settings (lgvq.settings), never the raw config."""

    settings: DownstreamSettings   # the `downstream` section (width, layers, heads, max_words, ...)
    data: DatasetSettings          # the dataset's entry (data.key: its config key)
    source: Any                    # its DatasetSource (records, qa, refs)
    frontend: Any                  # CodeFrontEnd: codes -> (B, h*w, width) features
    train_codes: Any               # CodeTable of the train split
    test_codes: Any                # CodeTable of test, then train and val (annotations may cross splits)
    device: Any
    seed: int

    @property
    def dataset(self) -> str:
        """The dataset's config key."""
        return self.data.key


@dataclass
class Evaluation:
    metrics: dict[str, float]               # metric key -> value (fractions; tables scale percentages)
    notes: dict[str, str]                   # metric key -> how it was computed
    predictions: list[dict[str, Any]]       # every test prediction: predictions.json
    extra: dict[str, Any] = field(default_factory=dict)   # more fields of metrics.json (e.g. "examples")


@dataclass
class HeadSetup:
    model: Any                                          # nn.Module, moved to the device by the pipeline
    loss_terms: Callable[[Any, Any], dict[str, Any]]    # (model, batch) -> named loss tensors
    n_train: int                                        # training examples
    make_batch: Callable[[list[int], int], Any]         # (example indices, epoch) -> batch
    evaluate: Callable[[Any], Evaluation]               # trained model (eval mode) -> Evaluation
    vocab: dict[str, Any]                               # written to vocab.json beside the head
    # n -> fixed batches of (up to) the first n val-split examples, built like make_batch's: the validation
    # curve (loss_terms in eval mode, every downstream.val_every steps); None: the task has no val split
    val_batches: Callable[[int], list[Any]] | None = None


class DownstreamTask:
    """Subclass per task. `table`: the task's own table (None for the built-ins, which fill the
    paper's tables declared in lgvq.tables.paper); its id must be the task's name."""

    name: str = ""
    table: Table | None = None

    def prefix_width(self, settings: DownstreamSettings) -> int | None:
        """Width the code features must have, when the head fixes it (a pretrained decoder)."""
        return None

    def setup(self, ctx: HeadContext) -> HeadSetup:  # pragma: no cover - interface
        raise NotImplementedError

    def example_cells(self, example: dict[str, Any]) -> list[str]:
        """One example prediction as report cells: input, reference, ours."""
        return [str(v) for v in list(example.values())[:3]]


HEADS = Registry("downstream task", "downstream.tasks", {
    "captioning": "lgvq.downstream.captioning:CaptioningTask",
    "vqa": "lgvq.downstream.vqa:VQATask",
    "grounding": "lgvq.downstream.grounding:GroundingTask",
})
