"""The reference rows of the tables: trivial baselines and ceilings, computed by the DAG (issue 23).

A number means something only beside what a predictor that learnt nothing scores (a baseline) and what
the data itself allow (a ceiling: real images scored as if they were samples). Each `Reference` below is
one job kind: it writes ordinary MetricRecords whose variant is "baseline:<name>" or "ceiling:<name>" and
whose tokenizer is "*" (data-only) or the tokenizer run it belongs to, with the same `kind` and metric
keys as the models of its tables, so the table builder (lgvq.tables.build) renders them as rows of their
own after the models, without a Δ.

Adding one (torch-free here; the computation lives in its `target`):
1. a `Reference` in `REFERENCES`: name, row kind, the record kinds it writes, the tables it joins, whether
   it is per tokenizer run, the inputs its rule waits for (`needs`), and `target` ("module:function");
2. the target: `fn(cfg, ref, dataset, tokenizer | None, seed) -> {kind: Measured}` (lgvq.pipeline.reference_jobs
   writes the records and the manifest);
3. its rule name (`reference_<name>`) in profiles/slurm-local's `set-resources` (a CPU cluster: no GPU) and,
   for a new record kind or input, a row in docs/config_changes.md. The rule (workflow/rules/references.smk),
   the verb (`lgvq reference data|run --task <name>`), the paths, the job hash and the tables' inputs come
   from this declaration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lgvq.config import ConfigError
from lgvq.settings import eval_settings, references_settings
from lgvq.stage2.registry import STAGE2_TASKS
from lgvq.tables.paper import TABLES as PAPER_TABLES

DATA_ONLY = "*"          # the records' tokenizer when the number depends on no tokenizer run (lgvq.tables.build)
DATA_SEGMENT = "data"    # ... and the path segment in its place (no "*" in a path)
ROW_KINDS = ("baseline", "ceiling")
# The inputs a reference job can wait for; workflow/rules/references.smk maps each to its file pattern.
NEEDS = ("data", "extractor", "text", "model", "codes", "codebook")


def paper_generation_tables() -> tuple[str, ...]:
    """The paper's tables the built-in second-stage tasks fill (their `table_id`, lgvq.stage2.registry), in
    the paper's order (lgvq.tables.paper.TABLES): text_to_image, semantic_synthesis, unconditional, completion.
    Built-ins only, so the references and their paths do not depend on which plug-ins were imported first."""
    filled = {STAGE2_TASKS.get(n).table_id for n in STAGE2_TASKS.names() if STAGE2_TASKS.is_builtin(n)}
    return tuple(t for t in PAPER_TABLES if t in filled)


GENERATION_TABLES = paper_generation_tables()
GENERATION_KINDS = GENERATION_TABLES  # a stage-2 table's id is its record kind
# The record kind whose reference folder holds the shuffled/decoded-codes samples (a path segment: fixed).
SAMPLES_KIND = "text_to_image"
if SAMPLES_KIND not in GENERATION_KINDS:
    raise ValueError(f"references: {SAMPLES_KIND} is no longer a generation table ({GENERATION_KINDS})")


@dataclass(frozen=True)
class Reference:
    name: str                      # the row's short name: "baseline: <name>"
    row: str                       # baseline | ceiling
    kinds: tuple[str, ...]         # the record kinds it writes (one metrics.json each)
    tables: tuple[str, ...]        # the tables it is a row of (each reads the kinds of its own spec)
    per_tokenizer: bool            # one job per tokenizer run (the base variant's seeds), else one per dataset
    needs: tuple[str, ...]         # inputs of its rule, from NEEDS
    target: str                    # "module:function" computing it
    description: str               # what it is, for the README and the manifest
    head_seeds: bool = False       # a trained head: one data-only job per `expensive_seeds` seed (its init and batches)

    def __post_init__(self) -> None:
        if self.row not in ROW_KINDS:
            raise ValueError(f"reference {self.name}: row must be one of {ROW_KINDS}, not {self.row!r}")
        unknown = set(self.needs) - set(NEEDS)
        if unknown:
            raise ValueError(f"reference {self.name}: unknown needs {sorted(unknown)} (known: {NEEDS})")
        if self.head_seeds and self.per_tokenizer:
            raise ValueError(f"reference {self.name}: a head-seeded reference is data-only")

    @property
    def variant(self) -> str:
        return f"{self.row}:{self.name}"

    @property
    def rule(self) -> str:
        """The Snakemake rule computing it."""
        return "reference_" + self.name.replace("-", "_")

    def record_tokenizer(self, tokenizer: str | None) -> str:
        return tokenizer if self.per_tokenizer and tokenizer else DATA_ONLY


IMAGES = "lgvq.pipeline.reference_images"
TEXT = "lgvq.pipeline.reference_text"
HEADS = "lgvq.pipeline.reference_heads"

REFERENCES: tuple[Reference, ...] = (
    Reference("real-vs-real", "ceiling", ("reconstruction", *GENERATION_KINDS),
              ("reconstruction", *GENERATION_TABLES), False, ("data", "extractor"), f"{IMAGES}:real_vs_real",
              "FID between the models' real reference images and as many other real test images: the floor any "
              "FID reaches at this sample count"),
    Reference("one-code", "baseline", ("reconstruction",), ("reconstruction",), False, ("data", "extractor"),
              f"{IMAGES}:one_code",
              "a 1-code tokenizer: every test image reconstructed as the per-pixel mean of the training images"),
    Reference("word-prior", "baseline", ("text_alignment",), ("masked_word",), False, ("data", "text"),
              f"{TEXT}:word_prior",
              "the most frequent training-caption token at each position, scored with the LG decoder's masks"),
    Reference("chance", "baseline", ("text_alignment",), ("masked_word",), False, ("data",), f"{TEXT}:chance",
              "image-to-text retrieval by chance: k / n test captions (exact)"),
    Reference("random-codebook", "baseline", ("text_alignment",), ("word_code_similarity",), True,
              ("data", "text", "codes", "codebook"), f"{TEXT}:random_codebook",
              "the word-code MSE protocol on the run's codes with its codebook replaced by N(0, std²) vectors"),
    Reference("always-absent", "baseline", ("text_to_image",), ("text_to_image",), False, ("data", "extractor"),
              f"{IMAGES}:always_absent", "attribute accuracy of a classifier that answers 'absent' for every attribute"),
    Reference("real-images", "ceiling", ("text_to_image",), ("text_to_image",), False, ("data", "extractor"),
              f"{IMAGES}:real_images", "attribute accuracy of the real test images under the same classifier"),
    Reference("shuffled-codes", "baseline", GENERATION_KINDS, GENERATION_TABLES, True,
              ("data", "extractor", "model", "codes"), f"{IMAGES}:shuffled_codes",
              "training code grids with their positions shuffled per image (code frequencies kept, layout "
              "destroyed), decoded by the tokenizer"),
    Reference("decoded-codes", "ceiling", GENERATION_KINDS, GENERATION_TABLES, True,
              ("data", "extractor", "model", "codes"), f"{IMAGES}:decoded_codes",
              "the real test images' own codes decoded by the tokenizer, scored like the samples: what a second stage "
              "reaches through this tokenizer (its FID is the reconstruction FID; attribute accuracy reads the "
              "decoder's images)"),
    Reference("majority-per-type", "baseline", ("vqa",), ("vqa",), False, ("data",), f"{HEADS}:majority_per_type",
              "each question type's most frequent training answer, whatever the image and question"),
    Reference("mean-box", "baseline", ("grounding",), ("grounding",), False, ("data",), f"{HEADS}:mean_box_baseline",
              "the mean normalised training box, for every referring expression"),
    Reference("most-frequent-caption", "baseline", ("captioning",), ("captioning",), False, ("data",),
              f"{HEADS}:most_frequent_caption_baseline", "the most frequent training caption, for every test image"),
    Reference("blind-head", "baseline", ("vqa",), ("vqa",), False, ("data",), "lgvq.pipeline.reference_blind:blind_head",
              "the VQA head, same architecture and steps, trained and evaluated with every code grid replaced by a "
              "constant one: the question alone", head_seeds=True),
    Reference("text-only-head", "baseline", ("grounding",), ("grounding",), False, ("data",),
              "lgvq.pipeline.reference_blind:blind_head",
              "the grounding head, same architecture and steps, trained and evaluated with every code grid replaced "
              "by a constant one: the expression alone", head_seeds=True),
)
BY_NAME: dict[str, Reference] = {r.name: r for r in REFERENCES}


def get_reference(name: str) -> Reference:
    if name not in BY_NAME:
        raise ConfigError(f"unknown reference '{name}' (known: {', '.join(BY_NAME)})")
    return BY_NAME[name]


def enabled_references(cfg: dict[str, Any]) -> list[Reference]:
    """The references a config computes: all of them when `references.enabled`, each unless switched off
    in `references.skip`."""
    rs = references_settings(cfg)
    if not rs.enabled:
        return []
    unknown = [n for n in rs.skip if n not in BY_NAME]
    if unknown:
        raise ConfigError(f"references.skip: unknown reference(s) {unknown} (known: {', '.join(BY_NAME)})")
    return [r for r in REFERENCES if r.name not in rs.skip]


def data_seeds(cfg: dict[str, Any], ref: Reference) -> list[int]:
    """The seeds of a data-only reference's jobs: a trained head's `expensive_seeds`, else the evaluation seed."""
    return [int(s) for s in cfg["expensive_seeds"]] if ref.head_seeds else [data_seed(cfg)]


def data_seed(cfg: dict[str, Any]) -> int:
    """The seed of a data-only reference's record: the evaluation seed (it draws the masked positions, the
    same as the models'); the number does not depend on a training seed."""
    return eval_settings(cfg).mask_eval_seed
