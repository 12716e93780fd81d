"""Visual question answering on codes (Table 9, Table 13), COCO-QA protocol.

[ code prefix | question words <eos> <pad> ... ] goes through a GPT-2-architecture model
(transformers' `GPT2Model`, causal); the hidden state at the question's last token (<eos>) has
seen the whole image and question and is classified over the answer vocabulary. Padding comes
after that position, so causal attention keeps it out without a mask.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lgvq.downstream.frontend import CodeFrontEnd


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
