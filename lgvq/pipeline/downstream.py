"""`lgvq downstream run --task captioning|vqa|grounding`: train a head on a frozen tokenizer's
codes (train split), evaluate it on the test split, write eval/<task>/.../metrics.json.

Inputs are the code files `lgvq tokenizer encode` wrote (codes/<split>.npy with their image ids,
and codebook.npy) and the dataset's annotations; the tokenizer itself is never loaded, so a
head sees exactly what the codes carry. The head trains in the one training loop (exact resume,
log.csv, progress bar) under downstream/<task>/<tok>/<variant>/seed<s>/.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lgvq.io import ArtifactError, atomic_write_json
from lgvq.manifest import RunRecord, config_hash
from lgvq.pipeline import jobs, paths
from lgvq.pipeline.common import dataset_source, process_group
from lgvq.pipeline.tokenizer import load_codes

TASKS = ("captioning", "vqa", "grounding")
N_EXAMPLES = 8  # predictions shown in the report


class CodeTable:
    """Codes looked up by image id, from the code files of the given splits (in order).

    Test annotations may point at images of another image split: RefCOCOg's umd test
    expressions are on COCO train2014 images, which the coco source lists under "train". The
    tokenizer has seen those images either way (the paper uses the same MS-COCO codebook)."""

    def __init__(self, tokdir: Path, splits: tuple[str, ...]) -> None:
        arrays, self.row = [], {}
        for split in splits:
            codes = load_codes(tokdir / "codes" / f"{split}.npy")
            ids_path = tokdir / "codes" / f"{split}_image_ids.npy"
            try:
                ids = np.load(ids_path, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise ArtifactError(f"corrupt or missing {ids_path}: {e}; re-run `lgvq tokenizer encode`") from e
            if len(ids) != len(codes):
                raise ArtifactError(f"{ids_path} lists {len(ids)} images but its code file has {len(codes)}")
            offset = sum(len(a) for a in arrays)
            for r, i in enumerate(ids):
                self.row.setdefault(int(i), offset + r)  # val and test may be the same images
            arrays.append(codes)
        self.codes = np.concatenate(arrays)
        self.where = f"{tokdir / 'codes'} ({', '.join(splits)})"

    def __call__(self, image_id: int) -> int:
        if image_id not in self.row:
            raise ArtifactError(f"image {image_id} has no codes in {self.where} (annotations and codes disagree)")
        return self.row[image_id]

    def batch(self, rows: list[int], device) -> torch.Tensor:
        return torch.as_tensor(self.codes[rows], dtype=torch.long, device=device)


def run(cfg: dict[str, Any], task: str, dataset: str, tokenizer: str, variant: str, seed: int) -> Path:
    if task not in TASKS:
        raise ArtifactError(f"unknown downstream task '{task}' (tasks: {', '.join(TASKS)})")
    from lgvq.downstream.frontend import CodeFrontEnd
    from lgvq.downstream.task import HeadTask
    from lgvq.train.loop import seed_everything, shuffled_batches, train_loop

    R, d = cfg["results_dir"], cfg["downstream"]
    h = config_hash(jobs.downstream_training(cfg, task, dataset, tokenizer, variant, seed))  # the checkpoint's
    work = paths.downstream_dir(R, task, dataset, tokenizer, variant, seed)
    out = paths.eval_dir(R, task, dataset, tokenizer, variant, seed)
    record = RunRecord(f"downstream/{task}", jobs.downstream_job(cfg, task, dataset, tokenizer, variant, seed),
                       seed=seed, training_hash=h)
    tokdir = paths.tokenizer_dir(R, dataset, tokenizer, variant, seed)
    train_codes, test_codes = CodeTable(tokdir, ("train",)), CodeTable(tokdir, ("test", "train", "val"))
    codebook = torch.as_tensor(np.load(paths.codebook_file(R, dataset, tokenizer, variant, seed), allow_pickle=False))
    source = dataset_source(cfg, dataset)
    dist, dev = process_group(cfg)  # one process unless torchrun started several (downstream.gpus > 1)
    seed_everything(seed)
    width = d["width"]
    if task == "captioning" and d["gpt2_path"]:  # the prefix must match the pretrained model's width
        from transformers import GPT2Config

        width = GPT2Config.from_pretrained(d["gpt2_path"]).n_embd
    frontend = CodeFrontEnd(codebook, train_codes.codes.shape[1:], width)
    builder = {"captioning": _captioning, "vqa": _vqa, "grounding": _grounding}[task]
    model, loss_terms, n_train, make_batch, evaluate, vocab = builder(cfg, dataset, source, frontend, train_codes, test_codes, dev, seed)
    model.to(dev)
    if dist.is_main:
        atomic_write_json(work / "vocab.json", vocab)
    train_loop(HeadTask(model, loss_terms, lr=d["lr"], dist=dist),
               shuffled_batches(n_train, d["batch_size"], seed, make_batch, dist=dist, key="downstream.batch_size"),
               out_dir=work, max_steps=d["steps"], seed=seed, config_hash=h, ckpt_every=max(1, d["steps"] // 2),
               log_every=max(1, min(10, d["steps"])), desc=f"{task}/{tokenizer}/{variant}/seed{seed}", dist=dist)
    if not dist.is_main:
        return out / "metrics.json"  # rank 0 evaluates and writes
    model.eval()
    metrics, notes, predictions, extra = evaluate(model)
    common = {"dataset": dataset, "tokenizer": tokenizer, "variant": variant, "seed": seed}
    atomic_write_json(out / "predictions.json", predictions)
    atomic_write_json(out / "metrics.json", {
        "kind": task, **common, "metrics": metrics, "notes": notes, **extra,
        "labels": {"head": f"{type(model).__name__}: width {d['width']}, {d['layers']} layers, {d['heads']} heads, "
                           f"trained from scratch for {d['steps']} steps (batch {d['batch_size']}) on the train split's codes",
                   "tokenizer_class": cfg["tokenizers"][tokenizer]["class"],
                   **({"decoder": vocab["decoder"]} if "decoder" in vocab else {})},
    })
    record.write(out, head_dir=str(work), processes=dist.world)
    return out / "metrics.json"


# --- captioning -----------------------------------------------------------------------------------

def _captioning(cfg, dataset, source, frontend, train_codes, test_codes, dev, seed):
    from lgvq.downstream.captioning import CaptionModel
    from lgvq.downstream.vocab import WordVocab, pad_batch
    from lgvq.metrics.captions import caption_scores, to_paper_scale

    d = cfg["downstream"]
    train = [(train_codes(r.image_id), r.captions) for r in source.records("train")]
    test = list(source.records("test"))
    if d["eval_limit"]:
        test = test[: d["eval_limit"]]
    if d["gpt2_path"]:
        model, vocab = CaptionModel.from_pretrained(frontend, d["gpt2_path"], max_words=d["max_words"])
        decoder = f"pretrained GPT-2 from {d['gpt2_path']} (its BPE tokenizer)"
    else:
        vocab = WordVocab.build(c for _, caps in train for c in caps)
        model = CaptionModel(frontend, len(vocab), layers=d["layers"], heads=d["heads"], max_words=d["max_words"],
                             dropout=d["dropout"])
        decoder = f"GPT-2 architecture trained from scratch, word vocabulary of {len(vocab)}"

    def make_batch(idx: list[int], epoch: int):
        caps = [train[i][1][random.Random(seed * 1_000_003 + epoch * 10_007 + i).randrange(len(train[i][1]))] for i in idx]
        tokens, lengths = pad_batch([vocab.encode(c, d["max_words"], bos=True, eos=True) for c in caps], pad=vocab.PAD)
        return train_codes.batch([train[i][0] for i in idx], dev), tokens.to(dev), lengths.to(dev)

    def evaluate(m):
        refs = {r.image_id: list(r.captions) for r in test}
        beam, greedy = {}, {}
        for i in range(0, len(test), 64):
            chunk = test[i : i + 64]
            codes = test_codes.batch([test_codes(r.image_id) for r in chunk], dev)
            for r, ids in zip(chunk, m.greedy(codes)):
                greedy[r.image_id] = vocab.decode(ids)
            for r, ids in zip(chunk, m.beam_search(codes, d["beam"])):
                beam[r.image_id] = vocab.decode(ids)
        scores = to_paper_scale(caption_scores(beam, refs))
        greedy_scores = to_paper_scale(caption_scores(greedy, refs))
        n = len(test)
        notes = {k: f"pycocoevalcap {k} x100, beam {d['beam']}, {n} test images, all references per image; "
                    f"decoder: {decoder}" for k in scores}
        preds = [{"image_id": r.image_id, "image": str(r.path), "references": list(r.captions), "beam": beam[r.image_id],
                  "greedy": greedy[r.image_id]} for r in test]
        return scores, notes, preds, {"greedy": greedy_scores, "examples": preds[:N_EXAMPLES]}

    return model, lambda m, b: {"caption_ce": m.loss(*b)}, len(train), make_batch, evaluate, \
        {"words": vocab.to_dict(), "decoder": decoder}


# --- VQA ------------------------------------------------------------------------------------------

def _vqa(cfg, dataset, source, frontend, train_codes, test_codes, dev, seed):
    from lgvq.downstream.vocab import AnswerVocab, WordVocab, pad_batch
    from lgvq.downstream.vqa import VQAModel
    from lgvq.metrics.vqa import COCOQA_QUESTION_TYPES, accuracy, per_type_accuracy, wups

    d = cfg["downstream"]
    train, test = source.qa("train"), source.qa("test")
    if not train or not test:
        raise ArtifactError(f"dataset has {len(train)} train / {len(test)} test questions; VQA needs both")
    words = WordVocab.build(q.question for q in train)
    answers = AnswerVocab.build((q.answer for q in train), d["max_answers"])
    model = VQAModel(frontend, len(words), len(answers), layers=d["layers"], heads=d["heads"],
                     max_words=d["max_words"], dropout=d["dropout"])
    train = [q for q in train if answers.lookup(q.answer) >= 0]  # rare answers outside the classes are not trained on

    def make_batch(idx: list[int], epoch: int):
        qs = [train[i] for i in idx]
        tokens, lengths = pad_batch([words.encode(q.question, d["max_words"], eos=True) for q in qs])
        return (train_codes.batch([train_codes(q.image_id) for q in qs], dev), tokens.to(dev), lengths.to(dev),
                torch.as_tensor([answers.lookup(q.answer) for q in qs], device=dev))

    def loss_terms(m, b):
        codes, tokens, lengths, target = b
        return {"answer_ce": torch.nn.functional.cross_entropy(m(codes, tokens, lengths), target)}

    @torch.no_grad()
    def evaluate(m):
        preds = []
        for i in range(0, len(test), 128):
            qs = test[i : i + 128]
            tokens, lengths = pad_batch([words.encode(q.question, d["max_words"], eos=True) for q in qs])
            logits = m(test_codes.batch([test_codes(q.image_id) for q in qs], dev), tokens.to(dev), lengths.to(dev))
            preds += [answers.answers[j] for j in logits.argmax(-1).tolist()]
        gold = [q.answer for q in test]
        types = [COCOQA_QUESTION_TYPES.get(q.qtype, str(q.qtype)) for q in test]
        metrics = {"Accuracy": accuracy(preds, gold), "WUPS@0.9": wups(preds, gold, 0.9), "WUPS@0.0": wups(preds, gold, 0.0)}
        covered = float(np.mean([answers.lookup(a) >= 0 for a in gold]))
        notes = {"Accuracy": f"exact match over {len(test)} test questions ({covered:.1%} have an answer in the "
                             f"{len(answers)}-class vocabulary)",
                 "WUPS@0.9": "WordNet Wu-Palmer set similarity, threshold 0.9 (0.1 weight below it)",
                 "WUPS@0.0": "WordNet Wu-Palmer set similarity, no threshold"}
        rows = [{"image_id": q.image_id, "question": q.question, "answer": q.answer, "prediction": p, "type": t}
                for q, p, t in zip(test, preds, types)]
        return metrics, notes, rows, {"per_type_accuracy": per_type_accuracy(preds, gold, types),
                                      "examples": rows[:N_EXAMPLES]}

    return model, loss_terms, len(train), make_batch, evaluate, \
        {"words": words.to_dict(), "answers": answers.to_dict()}


# --- grounding ------------------------------------------------------------------------------------

def _image_sizes(records) -> dict[int, tuple[int, int]]:
    from PIL import Image

    sizes = {}
    for r in records:
        try:
            with Image.open(r.path) as im:
                sizes[r.image_id] = im.size
        except OSError as e:
            raise ArtifactError(f"unreadable image {r.path}: {e}") from e
    return sizes


def _grounding(cfg, dataset, source, frontend, train_codes, test_codes, dev, seed):
    from lgvq.downstream.grounding import GroundingModel, box_losses
    from lgvq.downstream.vocab import WordVocab, pad_batch
    from lgvq.metrics.grounding import cxcywh_norm_to_xywh, grounding_accuracy, iou_xywh_many, xywh_to_cxcywh_norm

    d = cfg["downstream"]
    if cfg["datasets"][dataset]["resize_mode"] != "resize":
        raise ArtifactError(f"datasets.{dataset}.resize_mode: grounding needs 'resize' (a crop would move the boxes "
                            "off the code grid)")
    sizes = {**_image_sizes(source.records("train")), **_image_sizes(source.records("test"))}
    train, test = source.refs("train"), source.refs("test")
    if not train or not test:
        raise ArtifactError(f"dataset has {len(train)} train / {len(test)} test referring expressions; grounding needs both")
    words = WordVocab.build(r.sentence for r in train)
    model = GroundingModel(frontend, len(words), layers=d["layers"], heads=d["heads"], max_words=d["max_words"],
                           dropout=d["dropout"])

    def target(r):
        w, h = sizes[r.image_id]
        return xywh_to_cxcywh_norm(r.bbox_xywh, w, h)

    def make_batch(idx: list[int], epoch: int):
        rs = [train[i] for i in idx]
        tokens, _ = pad_batch([words.encode(r.sentence, d["max_words"]) or [WordVocab.UNK] for r in rs])
        return (train_codes.batch([train_codes(r.image_id) for r in rs], dev), tokens.to(dev),
                torch.as_tensor([target(r) for r in rs], dtype=torch.float32, device=dev))

    def loss_terms(m, b):
        codes, tokens, boxes = b
        terms = box_losses(m(codes, tokens), boxes)
        return {"l1": 5.0 * terms["l1"], "giou": 2.0 * terms["giou"]}  # DETR/TransVG weights

    @torch.no_grad()
    def evaluate(m):
        pred = []
        for i in range(0, len(test), 128):
            rs = test[i : i + 128]
            tokens, _ = pad_batch([words.encode(r.sentence, d["max_words"]) or [WordVocab.UNK] for r in rs])
            boxes = m(test_codes.batch([test_codes(r.image_id) for r in rs], dev), tokens.to(dev)).cpu().tolist()
            pred += [cxcywh_norm_to_xywh(b, *sizes[r.image_id]) for b, r in zip(boxes, rs)]
        gt = [r.bbox_xywh for r in test]
        ious = iou_xywh_many(pred, gt)
        metrics = {"Accuracy@0.5": grounding_accuracy(pred, gt, 0.5), "mean_IoU": float(np.mean(ious))}
        notes = {"Accuracy@0.5": f"fraction of the {len(test)} test expressions with IoU > 0.5"}
        rows = [{"image_id": r.image_id, "expression": r.sentence, "gt_xywh": list(r.bbox_xywh),
                 "pred_xywh": [round(v, 2) for v in p], "iou": float(iou)} for r, p, iou in zip(test, pred, ious)]
        return metrics, notes, rows, {"examples": rows[:N_EXAMPLES]}

    return model, loss_terms, len(train), make_batch, evaluate, {"words": words.to_dict()}
