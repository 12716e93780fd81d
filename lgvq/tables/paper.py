"""The paper's tables, declared once as data (numbers transcribed from PAPER.md).

A row is keyed by (tokenizer registry name, variant); "lg" = all three LG losses. Paper-only
rows (systems we do not run) have `tokenizer=None`. Paper values are keyed by
(paper dataset column, metric key); the paper's FID is Inception FID: "FID[inception]".
"LG-VQ" rows of Tables 7-11 are taken to mean VQ-GAN+LG (PAPER.md marks this as presumed). Rows of
models we run are named by lgvq.tables.names (the paper's "LG-VQ" row reads "VQ-GAN+LG", Table 2's
"(iv) + Lmtp + Lras" reads "VQ-GAN+Lmtp+Lras"); the tables that rename a paper row say so in their note.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lgvq.metrics.catalogue import metric_info
from lgvq.metrics.named import NAMED_KINDS, named_metric
from lgvq.metrics.vqa import COCOQA_QUESTION_TYPES, type_metric
from lgvq.tables.names import display_name

TC, CH, CUB, COCO = "TextCaps", "CelebA-HQ", "CUB-200", "MS-COCO"
FID = "FID[inception]"


@dataclass(frozen=True)
class Row:
    label: str
    tokenizer: str | None
    variant: str = "base"
    paper: dict[tuple[str, str], float] = field(default_factory=dict)


def _row(tokenizer: str, variant: str, paper: dict[tuple[str, str], float]) -> Row:
    """A row of a model this harness runs, named by the one naming scheme (lgvq.tables.names)."""
    return Row(display_name(tokenizer, variant), tokenizer, variant, paper)


@dataclass(frozen=True)
class Table:
    id: str
    number: str
    caption: str
    kinds: tuple[str, ...]
    metrics: tuple[str, ...]           # metric keys shown (ours may add FID[<extractor>] variants)
    paper_columns: tuple[str, ...]
    rows: tuple[Row, ...]
    note: str = ""


def _t1(fid_psnr: dict[str, tuple[float, float]]) -> dict[tuple[str, str], float]:
    out = {}
    for col, (f, p) in fid_psnr.items():
        out[(col, FID)], out[(col, "PSNR")] = f, p
    return out


RECON_ROWS = (
    _row("vqvae", "base", _t1({TC: (82.31, 21.96), CH: (41.45, 25.57), CUB: (54.92, 24.38), COCO: (86.21, 23.55)})),
    _row("vqvae", "lg", _t1({TC: (81.93, 21.95), CH: (40.53, 25.04), CUB: (36.55, 25.60), COCO: (79.54, 23.40)})),
    _row("vqgan", "base", _t1({TC: (24.08, 19.64), CH: (5.66, 24.10), CUB: (3.63, 22.19), COCO: (14.45, 20.21)})),
    _row("vqgan", "lg", _t1({TC: (20.35, 19.92), CH: (5.34, 23.75), CUB: (3.08, 22.47), COCO: (10.72, 20.50)})),
    _row("cvq", "base", _t1({TC: (16.35, 20.24), CH: (5.19, 23.15), CUB: (3.61, 22.29), COCO: (9.94, 20.48)})),
    _row("cvq", "lg", _t1({TC: (15.51, 20.21), CH: (4.90, 24.48), CUB: (3.33, 22.47), COCO: (9.69, 20.71)})),
)


LG_VQ = "The paper's row 'LG-VQ' is VQ-GAN+LG here (presumed: PAPER.md)."
VQCT_CITED = "The paper's 'VQCT [51]' row is our VQCT run's row."


# COCO-QA's question types, one accuracy column each (lgvq.metrics.vqa.type_accuracy_metrics)
VQA_TYPE_COLUMNS = tuple(type_metric(t) for t in COCOQA_QUESTION_TYPES.values())
# What a caption names, against what its image shows (lgvq.metrics.named.named_exactly)
CAPTION_NAMED_COLUMNS = tuple(named_metric(k) for k in NAMED_KINDS)


def _one(col: str, metric: str, v: float) -> dict[tuple[str, str], float]:
    return {(col, metric): v}


TABLES: dict[str, Table] = {t.id: t for t in (
    Table("dataset_stats", "—", "Statistics of the configured datasets.", ("dataset_stats",), (), (), ()),
    Table("reconstruction", "Table 1", "Results of image reconstruction on TextCaps, CelebA-HQ, CUB-200, and MS-COCO.",
          ("reconstruction",), (FID, "PSNR", "SSIM"), (TC, CH, CUB, COCO), RECON_ROWS,
          "The paper reports no SSIM; its PSNR convention is not stated."),
    Table("ablation", "Table 2", "Ablation study of our three loss functions on TextCaps and CUB-200 (VQ-GAN backbone).",
          ("reconstruction",), (FID, "PSNR"), (TC, CUB), (
              _row("vqgan", "base", {(TC, FID): 24.08, (CUB, FID): 3.63}),
              _row("vqgan", "gsa", {(TC, FID): 23.01, (CUB, FID): 3.39}),
              _row("vqgan", "mtp", {(TC, FID): 21.54, (CUB, FID): 3.49}),
              _row("vqgan", "mtp-ras", {(TC, FID): 20.77, (CUB, FID): 3.32}),
              _row("vqgan", "mtp-gsa", {(TC, FID): 20.46, (CUB, FID): 3.34}),
              _row("vqgan", "lg", {(TC, FID): 20.35, (CUB, FID): 3.08}),
          ), "The paper does not run Lras alone. Its rows (i)-(vi) are VQ-GAN, +Lgsa, +Lmtp, +Lmtp+Lras, +Lmtp+Lgsa "
             "and VQ-GAN+LG (all three losses)."),
    Table("masked_word", "Table 3", "Results (Recall@1) of masked word prediction on CelebA-HQ and CUB-200.",
          ("text_alignment",), ("Recall@1[Mask-1]", "Recall@1[Mask-3]", "Recall@1[Mask-1, leak-free]",
                                "Recall@1[Mask-3, leak-free]", "I2T-R@1", "I2T-R@5"), (CH, CUB), (
              _row("vqgan", "lg", {(CH, "Recall@1[Mask-1]"): 99.55, (CH, "Recall@1[Mask-3]"): 99.24,
                                                 (CUB, "Recall@1[Mask-1]"): 83.65, (CUB, "Recall@1[Mask-3]"): 80.17}),
          ), "Only +LG models have a masked-text decoder; Mask-3 is scored per masked word (lgvq.lg.evaluate). "
             "Leak-free (ours): the caption re-encoded with the masked word(s) replaced by the text encoder's mask token "
             "before encoding; the paper's protocol encodes the full caption, so the word reaches the other positions. "
             "I2T-R@k: image-to-text retrieval from the [CLS] token (the paper shows retrieval only as pictures)."),
    Table("word_code_similarity", "Table 4", "Results of similarity evaluation between codes and words on CUB-200 all test data.",
          ("text_alignment",), ("word_code_MSE",), (CUB,), (
              _row("vqgan", "base", {(CUB, "word_code_MSE"): 0.6374}),
              _row("vqgan", "lg", {(CUB, "word_code_MSE"): 0.0351}),
          ), "Our protocol (ridge-aligned codes, identical for base and +LG) is in lgvq.lg.evaluate; the paper's is unstated."),
    Table("text_to_image", "Table 5", "Results of text-to-image on CelebA-HQ.", ("text_to_image",),
          (FID, "attribute_accuracy", "caption_following"), (CH,), (
        Row("Unite and Conqu [4]", None, paper=_one(CH, FID, 26.09)), Row("Corgi [54]", None, paper=_one(CH, FID, 19.74)),
        Row("LAFITE [55]", None, paper=_one(CH, FID, 12.54)), _row("vqgan", "base", _one(CH, FID, 15.29)),
        _row("cvq", "base", _one(CH, FID, 13.23)), _row("vqgan", "lg", _one(CH, FID, 12.61)),
        _row("cvq", "lg", _one(CH, FID, 12.33))),
        "Ours: VQ-Diffusion-style discrete diffusion (FID[...]) and, tagged AR-GPT, a GPT with a text prefix. "
        "attribute_accuracy (embedded data only): shapes and colours a sample shows vs those its caption names; "
        "caption_following: that accuracy minus the same samples' against another condition's caption (0 for samples "
        "that ignore their caption, whatever they look like)."),
    Table("semantic_synthesis", "Table 6", "Result (FID) of semantic synthesis on CelebA-HQ.", ("semantic_synthesis",),
          (FID,), (CH,), (
              Row("Reg-VQ [52]", None, paper=_one(CH, FID, 15.34)), Row("VQCT [51]", None, paper=_one(CH, FID, 14.47)),
              _row("vqgan", "base", _one(CH, FID, 11.53)), _row("cvq", "base", _one(CH, FID, 11.04)),
              _row("vqgan", "lg", _one(CH, FID, 11.46)), _row("cvq", "lg", _one(CH, FID, 11.03)))),
    Table("unconditional", "Table 7", "Result (FID) of unconditional image generation on CelebA-HQ.", ("unconditional",),
          (FID,), (CH,), (
              Row("Style ALAE [30]", None, paper=_one(CH, FID, 19.2)), Row("DC-VAE [31]", None, paper=_one(CH, FID, 15.8)),
              _row("vqgan", "base", _one(CH, FID, 10.2)), _row("vqgan", "lg", _one(CH, FID, 9.1))), LG_VQ),
    Table("grounding", "Table 8", "Result of visual grounding on refcoco dataset using MS-COCO's codebook "
          "(the paper's caption says FID; the column is Accuracy(0.5)).", ("grounding",), ("Accuracy@0.5",), (COCO,), (
              _row("vqgan", "base", _one(COCO, "Accuracy@0.5", 9.14)),
              _row("vqct", "base", _one(COCO, "Accuracy@0.5", 9.46)),
              _row("vqgan", "lg", _one(COCO, "Accuracy@0.5", 9.62))), f"{LG_VQ} {VQCT_CITED}"),
    Table("vqa", "Table 9", "Results of (Accuracy and WUPS) VQA on COCO-QA dataset using MS-COCO's codebook.", ("vqa",),
          ("Accuracy", "WUPS@0.9", *VQA_TYPE_COLUMNS), (COCO,), (
              _row("vqct", "base", {(COCO, "Accuracy"): 40.42, (COCO, "WUPS@0.9"): 82.06}),
              _row("vqgan", "base", {(COCO, "Accuracy"): 37.82, (COCO, "WUPS@0.9"): 83.22}),
              _row("vqgan", "lg", {(COCO, "Accuracy"): 40.97, (COCO, "WUPS@0.9"): 83.56})),
          f"The paper's WUPS threshold is not stated; we list ours at 0.9 beside it. Accuracy[type] (ours; the paper "
          "reports none): accuracy per COCO-QA question type; object = what the object is (on the embedded data, "
          f"its shape). {LG_VQ} {VQCT_CITED}"),
    Table("completion", "Table 10", "Result (FID) of image completion on CelebA-HQ.", ("completion",), (FID,), (CH,), (
        _row("vqgan", "base", _one(CH, FID, 9.02)), _row("vqgan", "lg", _one(CH, FID, 8.14))), LG_VQ),
    Table("captioning", "Table 11", "Results of image captioning on CUB-200.", ("captioning",),
          ("BLEU4", "ROUGE-L", "METEOR", "CIDEr-D", *CAPTION_NAMED_COLUMNS), (CUB,), (
              _row("vqgan", "base", {(CUB, "BLEU4"): 1.29, (CUB, "ROUGE-L"): 33.40, (CUB, "METEOR"): 24.47, (CUB, "CIDEr-D"): 93.62}),
              Row("V2L Tokenizer [56]", None, paper={(CUB, "BLEU4"): 1.59, (CUB, "ROUGE-L"): 30.65, (CUB, "METEOR"): 25.76, (CUB, "CIDEr-D"): 104.14}),
              _row("vqct", "base", {(CUB, "BLEU4"): 1.38, (CUB, "ROUGE-L"): 26.50, (CUB, "METEOR"): 24.63, (CUB, "CIDEr-D"): 98.22}),
              _row("vqgan", "lg", {(CUB, "BLEU4"): 1.69, (CUB, "ROUGE-L"): 34.73, (CUB, "METEOR"): 25.78, (CUB, "CIDEr-D"): 102.77})),
          "named_exactly[shape|colour] (ours, embedded data only): the share of test images whose caption names "
          "exactly the shapes (colours) the image shows; BLEU and CIDEr-D credit a template caption with the right "
          f"colour and the wrong shape. {LG_VQ} {VQCT_CITED}"),
    Table("vqct_reconstruction", "Table 12", "Comparison of VQCT and our method on reconstruction (FID; VQCT: 6207 codes, "
          "512 tokens; LG rows: 1024 codes, 256 tokens).", ("reconstruction",), (FID,), (CH, CUB, COCO), (
              _row("vqct", "base", {(CH, FID): 5.02, (CUB, FID): 2.13, (COCO, FID): 9.82}),
              _row("vqgan", "lg", {(CH, FID): 5.34, (CUB, FID): 3.08, (COCO, FID): 10.72}),
              _row("cvq", "lg", {(CH, FID): 4.90, (CUB, FID): 3.33, (COCO, FID): 9.69}))),
    Table("vqct_lg", "Table 13", "Comparison of reconstruction and VQA on VQCT and VQCT+LG on the MS-COCO dataset.",
          ("reconstruction", "vqa"), (FID, "Accuracy"), (COCO,), (
              _row("vqct", "base", {(COCO, FID): 9.82, (COCO, "Accuracy"): 40.42}),
              _row("vqct", "lg", {(COCO, FID): 9.57, (COCO, "Accuracy"): 40.64}))),
    Table("codebook_usage", "Fig. 7", "Codebook usage (percentage of codes used) from the captions of Fig. 7.",
          ("codebook",), ("usage", "perplexity"), (TC, COCO), (
              _row("vqgan", "base", {(TC, "usage"): 18.62, (COCO, "usage"): 40.09}),
              _row("vqgan", "lg", {(TC, "usage"): 43.58, (COCO, "usage"): 97.89})),
          "Usage = codes used at least once over the whole test split (the paper does not state its protocol)."),
)}


# Tables of ours that the paper has none of (built from our runs only; no paper values).
OWN_TABLES: dict[str, Table] = {t.id: t for t in (
    Table("dose_response", "Dose-response (ours; the paper has none)",
          "LG dose-response: one tokenizer trained with all three LG weights (datasets.<ds>.lg_weights) multiplied by "
          "x m; x0 = its base run, x1 = the +LG run of the other tables.",
          ("reconstruction", "text_alignment", "vqa"),
          ("Recall@1[Mask-1]", "Recall@1[Mask-1, leak-free]", "I2T-R@5", "PSNR", FID, "Accuracy"), (), (),
          "Recall@1 and I2T-R@5 exist only with a masked-text decoder (x0 has none); leak-free: as in Table 3. "
          "Accuracy: the VQA head "
          "(Table 9's task) trained on each run's frozen codes, the cheapest downstream task that learns on the "
          "embedded data (a classifier: no generation, no beam search)."),
)}


def table_spec(table_id: str) -> Table:
    """A paper table, one of ours (OWN_TABLES), or the own table of a registered task: an understanding
    task's (id = the task's name) or a second-stage task's (id = its `table_id`)."""
    if table_id in TABLES:
        return TABLES[table_id]
    if table_id in OWN_TABLES:
        return OWN_TABLES[table_id]
    from lgvq.downstream.registry import HEADS
    from lgvq.stage2.registry import own_tables

    if table_id in own_tables():
        return own_tables()[table_id]

    if table_id in HEADS:
        spec = HEADS.get(table_id).table
        if spec is not None:
            if spec.id != table_id:
                raise KeyError(f"downstream task '{table_id}' declares a table with id '{spec.id}': use the task's name")
            return spec
    raise KeyError(f"unknown table '{table_id}' (known: {', '.join(TABLES)}, and the tables of registered tasks)")


def lower_is_better(metric: str) -> bool:
    return metric_info(metric).lower_is_better


def is_percent(metric: str) -> bool:
    """Records hold fractions in [0, 1] for these; tables show percent like the paper."""
    return metric_info(metric).percent
