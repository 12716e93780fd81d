"""Image captioning on codes, ClipCap style (Table 11).

The image's code vectors (through `CodeFrontEnd`) form a prefix of h*w embeddings; a GPT-2-
architecture decoder (transformers' `GPT2LMHeadModel`) continues it with the caption:

    [ prefix_1 .. prefix_P | <bos> w_1 .. w_T <eos> <pad> ... ]

The loss is next-token cross-entropy on w_1 .. w_T <eos> only: prefix positions, the given
<bos> and padding are labelled -100 (`caption_labels`). Padding sits after <eos> and attention is
causal, so it never reaches a scored position and needs no attention mask.

Decoding: `greedy` (argmax, batched) and `beam_search` (per image, scores = summed log-prob
divided by length, hypotheses end at <eos> or `max_words`). Each step re-runs the decoder over
the whole sequence: at the sizes here (P <= 256, T <= 30) that is simpler than carrying
per-beam key/value caches and gives the same result.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lgvq.downstream.frontend import CodeFrontEnd
from lgvq.downstream.vocab import WordVocab

IGNORE = -100


def caption_labels(tokens: Tensor, n_prefix: int) -> Tensor:
    """Labels aligned with the full sequence [prefix | tokens]: -100 on the prefix, on the
    leading <bos> (given, not predicted) and on padding; the word ids elsewhere."""
    B = tokens.shape[0]
    words = tokens.masked_fill(tokens == WordVocab.PAD, IGNORE).clone()
    words[:, 0] = IGNORE
    return torch.cat([torch.full((B, n_prefix), IGNORE, dtype=tokens.dtype, device=tokens.device), words], 1)


class CaptionModel(nn.Module):
    def __init__(self, frontend: CodeFrontEnd, vocab_size: int, *, layers: int, heads: int, max_words: int,
                 dropout: float = 0.1) -> None:
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel

        self.frontend = frontend
        self.max_words = max_words
        cfg = GPT2Config(vocab_size=vocab_size, n_positions=frontend.n_tokens + max_words + 2,
                         n_embd=frontend.width, n_layer=layers, n_head=heads, resid_pdrop=dropout,
                         embd_pdrop=dropout, attn_pdrop=dropout, bos_token_id=WordVocab.BOS,
                         eos_token_id=WordVocab.EOS)
        self.gpt = GPT2LMHeadModel(cfg)

    def logits(self, codes: Tensor, tokens: Tensor) -> Tensor:
        """(B, P + T, V) next-token logits over [prefix | tokens]."""
        x = torch.cat([self.frontend(codes), self.gpt.transformer.wte(tokens)], 1)
        return self.gpt(inputs_embeds=x).logits

    def loss(self, codes: Tensor, tokens: Tensor) -> Tensor:
        logits = self.logits(codes, tokens)
        labels = caption_labels(tokens, self.frontend.n_tokens)
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                               ignore_index=IGNORE)

    @torch.no_grad()
    def greedy(self, codes: Tensor, max_words: int | None = None) -> list[list[int]]:
        """Word ids (without <bos>, up to and excluding <eos>) for each image of the batch."""
        T = max_words or self.max_words
        tokens = torch.full((len(codes), 1), WordVocab.BOS, dtype=torch.long, device=codes.device)
        done = torch.zeros(len(codes), dtype=torch.bool, device=codes.device)
        for _ in range(T + 1):
            nxt = self.logits(codes, tokens)[:, -1].argmax(-1)
            nxt = nxt.masked_fill(done, WordVocab.PAD)
            tokens = torch.cat([tokens, nxt[:, None]], 1)
            done |= nxt == WordVocab.EOS
            if bool(done.all()):
                break
        return [_strip(seq[1:].tolist()) for seq in tokens]

    @torch.no_grad()
    def beam_search(self, codes: Tensor, beam: int, max_words: int | None = None) -> list[list[int]]:
        return [self._beam_one(codes[i : i + 1], beam, max_words or self.max_words) for i in range(len(codes))]

    def _beam_one(self, codes: Tensor, beam: int, T: int) -> list[int]:
        alive: list[tuple[list[int], float]] = [([WordVocab.BOS], 0.0)]
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
                (finished if w == WordVocab.EOS else nxt_alive).append((seq, score))
            alive = nxt_alive
            if len(finished) >= beam or not alive:
                break
        finished += alive  # hypotheses cut at max_words compete too
        best = max(finished, key=lambda h: h[1] / (len(h[0]) - 1))
        return _strip(best[0][1:])


def _strip(ids: list[int]) -> list[int]:
    out = []
    for i in ids:
        if i == WordVocab.EOS:
            break
        if i != WordVocab.PAD:
            out.append(int(i))
    return out
