"""Visual question answering on codes (Table 9, Table 13), COCO-QA protocol.

[ code prefix | question words <eos> <pad> ... ] goes through a GPT-2-architecture model
(transformers' `GPT2Model`, causal); the hidden state at the question's last token (<eos>) has
seen the whole image and question and is classified over the answer vocabulary. Padding comes
after that position, so causal attention keeps it out without a mask.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lgvq.downstream.frontend import CodeFrontEnd
from lgvq.downstream.registry import EXAMPLES_SHOWN, DownstreamTask, Evaluation, HeadContext, HeadSetup
from lgvq.io import ArtifactError


class VQAModel(nn.Module):
    def __init__(self, frontend: CodeFrontEnd, vocab_size: int, n_answers: int, *, layers: int, heads: int,
                 max_words: int, dropout: float = 0.1) -> None:
        super().__init__()
        from transformers import GPT2Config, GPT2Model

        self.frontend = frontend
        cfg = GPT2Config(vocab_size=vocab_size, n_positions=frontend.n_tokens + max_words + 2,
                         n_embd=frontend.width, n_layer=layers, n_head=heads, resid_pdrop=dropout,
                         embd_pdrop=dropout, attn_pdrop=dropout)
        self.gpt = GPT2Model(cfg)
        self.head = nn.Sequential(nn.LayerNorm(frontend.width), nn.Linear(frontend.width, n_answers))

    def forward(self, codes: Tensor, question: Tensor, lengths: Tensor) -> Tensor:
        """codes (B, h, w), question (B, T) right-padded word ids, lengths (B,) -> answer logits (B, A)."""
        if bool((lengths < 1).any()):
            raise ValueError("every question needs at least one token")
        x = torch.cat([self.frontend(codes), self.gpt.wte(question)], 1)
        hidden = self.gpt(inputs_embeds=x).last_hidden_state
        last = self.frontend.n_tokens + lengths - 1
        return self.head(hidden[torch.arange(len(codes), device=codes.device), last])


# --- the task ----------------------------------------------------------------------------------

class VQATask(DownstreamTask):
    name = "vqa"

    def setup(self, ctx: HeadContext) -> HeadSetup:
        from lgvq.downstream.vocab import AnswerVocab, WordVocab, pad_batch
        from lgvq.metrics.vqa import (COCOQA_QUESTION_TYPES, accuracy, per_type_accuracy, type_accuracy_metrics,
                                      type_metric, wups)

        source, frontend, train_codes, test_codes, dev = ctx.source, ctx.frontend, ctx.train_codes, ctx.test_codes, ctx.device
        d = ctx.settings
        train, test = source.qa("train"), source.qa("test")
        if not train or not test:
            raise ArtifactError(f"dataset has {len(train)} train / {len(test)} test questions; VQA needs both")
        words = WordVocab.build(q.question for q in train)
        answers = AnswerVocab.build((q.answer for q in train), d.max_answers)
        model = VQAModel(frontend, len(words), len(answers), layers=d.layers, heads=d.heads,
                         max_words=d.max_words, dropout=d.dropout)
        train = [q for q in train if answers.lookup(q.answer) >= 0]  # rare answers outside the classes are not trained on

        def batch_of(qs, table):
            tokens, lengths = pad_batch([words.encode(q.question, d.max_words, eos=True) for q in qs])
            return (table.batch([table(q.image_id) for q in qs], dev), tokens.to(dev), lengths.to(dev),
                    torch.as_tensor([answers.lookup(q.answer) for q in qs], device=dev))

        def make_batch(idx: list[int], epoch: int):
            return batch_of([train[i] for i in idx], train_codes)

        def val_batches(n: int):  # questions whose answer is one of the classes (as in training)
            val = [q for q in (source.qa("val") if "val" in source.splits() else []) if answers.lookup(q.answer) >= 0][:n]
            return [batch_of(val[i : i + 128], test_codes) for i in range(0, len(val), 128)]

        def loss_terms(m, b):
            codes, tokens, lengths, target = b
            return {"answer_ce": torch.nn.functional.cross_entropy(m(codes, tokens, lengths), target)}

        @torch.no_grad()
        def evaluate(m):
            preds = []
            for i in range(0, len(test), 128):
                qs = test[i : i + 128]
                tokens, lengths = pad_batch([words.encode(q.question, d.max_words, eos=True) for q in qs])
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
            metrics |= type_accuracy_metrics(preds, gold, types)
            notes |= {type_metric(t): f"exact match over the {n} test questions of COCO-QA type '{t}'"
                      for t, n in Counter(types).items()}
            rows = [{"image_id": q.image_id, "question": q.question, "answer": q.answer, "prediction": p, "type": t}
                    for q, p, t in zip(test, preds, types)]
            return Evaluation(metrics, notes, rows, {"per_type_accuracy": per_type_accuracy(preds, gold, types),
                                                     "examples": rows[:EXAMPLES_SHOWN]})

        return HeadSetup(model, loss_terms, len(train), make_batch, evaluate,
                         {"words": words.to_dict(), "answers": answers.to_dict()}, val_batches)

    def example_cells(self, example: dict[str, Any]) -> list[str]:
        return [str(example["image_id"]), example["question"], f"{example['answer']} / ours: {example['prediction']}"]
