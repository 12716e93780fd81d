"""Image captioning on codes, ClipCap style (Table 11).

The image's code vectors (through `CodeFrontEnd`) form a prefix of h*w embeddings; a GPT-2-
architecture decoder (transformers' `GPT2LMHeadModel`) continues it with the caption:

    [ prefix_1 .. prefix_P | <bos> w_1 .. w_T <eos> <pad> ... ]

The loss is next-token cross-entropy on w_1 .. w_T <eos> only: prefix positions, the given
<bos> and padding are labelled -100 (`caption_labels`, from each caption's length, because
GPT-2's own tokenizer uses one id for <bos>, <eos> and padding). Padding sits after <eos> and
attention is causal, so it never reaches a scored position and needs no attention mask.

The decoder is either trained from scratch over our word vocabulary (`CaptionModel`) or a
pretrained GPT-2 loaded from a local directory with its own tokenizer
(`CaptionModel.from_pretrained`, as ClipCap does); the metrics record which.

Decoding: `greedy` (argmax, batched) and `beam_search` (per image, scores = summed log-prob
divided by length, hypotheses end at <eos> or `max_words`). Each step re-runs the decoder over
the whole sequence: at the sizes here (P <= 256, T <= 30) that is simpler than carrying
per-beam key/value caches and gives the same result.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lgvq.downstream.frontend import CodeFrontEnd
from lgvq.downstream.registry import EXAMPLES_SHOWN, DownstreamTask, Evaluation, HeadContext, HeadSetup
from lgvq.downstream.vocab import WordVocab
from lgvq.metrics.named import named_attributes, named_notes

if TYPE_CHECKING:
    from lgvq.settings import DownstreamSettings

IGNORE = -100


def caption_labels(tokens: Tensor, lengths: Tensor, n_prefix: int) -> Tensor:
    """Labels aligned with the full sequence [prefix | tokens]: -100 on the prefix, on the
    leading <bos> (given, not predicted) and on padding (positions >= length); ids elsewhere."""
    B, T = tokens.shape
    pad = torch.arange(T, device=tokens.device)[None] >= lengths.to(tokens.device)[:, None]
    words = tokens.masked_fill(pad, IGNORE)
    words[:, 0] = IGNORE
    return torch.cat([torch.full((B, n_prefix), IGNORE, dtype=tokens.dtype, device=tokens.device), words], 1)


class CaptionModel(nn.Module):
    def __init__(self, frontend: CodeFrontEnd, vocab_size: int, *, layers: int, heads: int, max_words: int,
                 dropout: float = 0.1, gpt=None, special: tuple[int, int, int] | None = None) -> None:
        """From scratch over a `WordVocab` of `vocab_size`; `gpt` and `special` (bos, eos, pad ids)
        are given by `from_pretrained` instead."""
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel

        self.frontend = frontend
        self.max_words = max_words
        self.bos, self.eos, self.pad = special or (WordVocab.BOS, WordVocab.EOS, WordVocab.PAD)
        if gpt is None:
            cfg = GPT2Config(vocab_size=vocab_size, n_positions=frontend.n_tokens + max_words + 2,
                             n_embd=frontend.width, n_layer=layers, n_head=heads, resid_pdrop=dropout,
                             embd_pdrop=dropout, attn_pdrop=dropout, bos_token_id=self.bos, eos_token_id=self.eos)
            gpt = GPT2LMHeadModel(cfg)
        if gpt.config.n_embd != frontend.width:
            raise ValueError(f"the code front end's width {frontend.width} must equal GPT-2's n_embd {gpt.config.n_embd}")
        if gpt.config.n_positions < frontend.n_tokens + max_words + 2:
            raise ValueError(f"GPT-2 has {gpt.config.n_positions} positions; {frontend.n_tokens} codes + "
                             f"{max_words + 2} caption tokens need more")
        self.gpt = gpt

    @classmethod
    def from_pretrained(cls, frontend: CodeFrontEnd, path: str, *, max_words: int) -> tuple["CaptionModel", "HFCaptionTokenizer"]:
        """A pretrained GPT-2 and its tokenizer from a local directory (save_pretrained layout)."""
        from transformers import AutoTokenizer, GPT2LMHeadModel

        tok = HFCaptionTokenizer(AutoTokenizer.from_pretrained(path))
        gpt = GPT2LMHeadModel.from_pretrained(path)
        return cls(frontend, len(tok), layers=0, heads=0, max_words=max_words, gpt=gpt,
                   special=(tok.BOS, tok.EOS, tok.PAD)), tok

    def logits(self, codes: Tensor, tokens: Tensor) -> Tensor:
        """(B, P + T, V) next-token logits over [prefix | tokens]."""
        x = torch.cat([self.frontend(codes), self.gpt.transformer.wte(tokens)], 1)
        return self.gpt(inputs_embeds=x).logits

    def loss(self, codes: Tensor, tokens: Tensor, lengths: Tensor) -> Tensor:
        logits = self.logits(codes, tokens)
        labels = caption_labels(tokens, lengths, self.frontend.n_tokens)
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                               ignore_index=IGNORE)

    @torch.no_grad()
    def greedy(self, codes: Tensor, max_words: int | None = None) -> list[list[int]]:
        """Word ids (without <bos>, up to and excluding <eos>) for each image of the batch."""
        T = max_words or self.max_words
        tokens = torch.full((len(codes), 1), self.bos, dtype=torch.long, device=codes.device)
        done = torch.zeros(len(codes), dtype=torch.bool, device=codes.device)
        for _ in range(T + 1):
            nxt = self.logits(codes, tokens)[:, -1].argmax(-1)
            nxt = nxt.masked_fill(done, self.eos)
            tokens = torch.cat([tokens, nxt[:, None]], 1)
            done |= nxt == self.eos
            if bool(done.all()):
                break
        return [_strip(seq[1:].tolist(), self.eos) for seq in tokens]

    @torch.no_grad()
    def beam_search(self, codes: Tensor, beam: int, max_words: int | None = None) -> list[list[int]]:
        return [self._beam_one(codes[i : i + 1], beam, max_words or self.max_words) for i in range(len(codes))]

    def _beam_one(self, codes: Tensor, beam: int, T: int) -> list[int]:
        alive: list[tuple[list[int], float]] = [([self.bos], 0.0)]
        finished: list[tuple[list[int], float]] = []
        for _ in range(T + 1):
            seqs = torch.as_tensor([s for s, _ in alive], device=codes.device)
            logp = F.log_softmax(self.logits(codes.expand(len(alive), *codes.shape[1:]), seqs)[:, -1], -1)
            total = torch.as_tensor([sc for _, sc in alive], device=codes.device)[:, None] + logp
            top = total.flatten().topk(beam)
            nxt_alive = []
            for score, flat in zip(top.values.tolist(), top.indices.tolist()):
                b, w = divmod(flat, logp.shape[1])
                seq = alive[b][0] + [w]
                (finished if w == self.eos else nxt_alive).append((seq, score))
            alive = nxt_alive
            if len(finished) >= beam or not alive:
                break
        finished += alive  # hypotheses cut at max_words compete too
        best = max(finished, key=lambda h: h[1] / (len(h[0]) - 1))
        return _strip(best[0][1:], self.eos)


def _strip(ids: list[int], eos: int) -> list[int]:
    """Ids up to (excluding) the first <eos>."""
    out = []
    for i in ids:
        if i == eos:
            break
        out.append(int(i))
    return out


class HFCaptionTokenizer:
    """A Hugging Face GPT-2 tokenizer behind `WordVocab`'s encode/decode. GPT-2 has one special
    token, <|endoftext|>, used as <bos>, <eos> and padding (labels come from lengths)."""

    def __init__(self, tokenizer) -> None:
        if tokenizer.eos_token_id is None:
            raise ValueError("the local tokenizer has no end-of-text token")
        self.tokenizer = tokenizer
        self.BOS = self.EOS = self.PAD = int(tokenizer.eos_token_id)

    def __len__(self) -> int:
        return len(self.tokenizer)

    def encode(self, text: str, max_words: int, *, bos: bool = False, eos: bool = False) -> list[int]:
        """Token ids of " " + text (GPT-2 marks word starts with a space), cut to `max_words` tokens."""
        ids = self.tokenizer.encode(" " + text.strip(), add_special_tokens=False)[:max_words]
        return ([self.BOS] if bos else []) + ids + ([self.EOS] if eos else [])

    def decode(self, ids) -> str:
        return self.tokenizer.decode(_strip([int(i) for i in ids], self.EOS)).strip()

    def to_dict(self) -> dict:
        return {"hf_tokenizer": self.tokenizer.name_or_path, "size": len(self)}


# --- the task ----------------------------------------------------------------------------------

class CaptioningTask(DownstreamTask):
    name = "captioning"

    def prefix_width(self, settings: DownstreamSettings) -> int | None:
        """A pretrained GPT-2 fixes the prefix width (ClipCap)."""
        if not settings.gpt2_path:
            return None
        from transformers import GPT2Config

        return GPT2Config.from_pretrained(settings.gpt2_path).n_embd

    def setup(self, ctx: HeadContext) -> HeadSetup:
        from lgvq.downstream.vocab import WordVocab, pad_batch
        from lgvq.metrics.captions import caption_scores, to_paper_scale

        source, frontend, train_codes, test_codes, dev, seed = (ctx.source, ctx.frontend, ctx.train_codes, ctx.test_codes,
                                                                ctx.device, ctx.seed)
        d = ctx.settings
        train = [(train_codes(r.image_id), r.captions) for r in source.records("train")]
        test = list(source.records("test"))
        if d.eval_limit:
            test = test[: d.eval_limit]
        if d.gpt2_path:
            model, vocab = CaptionModel.from_pretrained(frontend, d.gpt2_path, max_words=d.max_words)
            decoder = f"pretrained GPT-2 from {d.gpt2_path} (its BPE tokenizer)"
        else:
            vocab = WordVocab.build(c for _, caps in train for c in caps)
            model = CaptionModel(frontend, len(vocab), layers=d.layers, heads=d.heads, max_words=d.max_words,
                                 dropout=d.dropout)
            decoder = f"GPT-2 architecture trained from scratch, word vocabulary of {len(vocab)}"

        def batch_of(rows: list[int], caps: list[str], table):
            tokens, lengths = pad_batch([vocab.encode(c, d.max_words, bos=True, eos=True) for c in caps], pad=vocab.PAD)
            return table.batch(rows, dev), tokens.to(dev), lengths.to(dev)

        def make_batch(idx: list[int], epoch: int):
            caps = [train[i][1][random.Random(seed * 1_000_003 + epoch * 10_007 + i).randrange(len(train[i][1]))] for i in idx]
            return batch_of([train[i][0] for i in idx], caps, train_codes)

        def val_batches(n: int):  # every reference caption of the first val images, up to n (image, caption) pairs
            recs = source.records("val") if "val" in source.splits() else []
            pairs = [(test_codes(r.image_id), c) for r in recs for c in r.captions][:n]
            return [batch_of([p[0] for p in pairs[i : i + 128]], [p[1] for p in pairs[i : i + 128]], test_codes)
                    for i in range(0, len(pairs), 128)]

        def evaluate(m):
            refs = {r.image_id: list(r.captions) for r in test}
            beam, greedy = {}, {}
            for i in range(0, len(test), 64):
                chunk = test[i : i + 64]
                codes = test_codes.batch([test_codes(r.image_id) for r in chunk], dev)
                for r, ids in zip(chunk, m.greedy(codes)):
                    greedy[r.image_id] = vocab.decode(ids)
                for r, ids in zip(chunk, m.beam_search(codes, d.beam)):
                    beam[r.image_id] = vocab.decode(ids)
            scores = to_paper_scale(caption_scores(beam, refs))
            greedy_scores = to_paper_scale(caption_scores(greedy, refs))
            n = len(test)
            notes = {k: f"pycocoevalcap {k} x100, beam {d.beam}, {n} test images, all references per image; "
                        f"decoder: {decoder}" for k in scores}
            named = named_attributes(test, beam)
            scores |= named
            notes |= named_notes(named, f"the head's beam-{d.beam} caption", n)
            preds = [{"image_id": r.image_id, "image": str(r.path), "references": list(r.captions), "beam": beam[r.image_id],
                      "greedy": greedy[r.image_id]} for r in test]
            return Evaluation(scores, notes, preds, {"greedy": greedy_scores, "examples": preds[:EXAMPLES_SHOWN]})

        return HeadSetup(model, lambda m, b: {"caption_ce": m.loss(*b)}, len(train), make_batch, evaluate,
                         {"words": vocab.to_dict(), "decoder": decoder}, val_batches)

    def example_cells(self, example: dict[str, Any]) -> list[str]:
        return [example["image"], example["references"][0], example["beam"]]
