"""The CLIP backend on a tiny randomly initialised CLIP text tower saved in HF format (the real
ViT-B/32 weights are not available offline; the loading and feature code is the same)."""

from __future__ import annotations

import json

import torch

from lgvq.text.registry import get_text_encoder


def tiny_clip(path):
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    words = ["a", "red", "blue", "circle", "square", "left", "of"]
    chars = sorted({c for w in words for c in w})
    vocab = {t: i for i, t in enumerate(chars + [c + "</w>" for c in chars] + [w + "</w>" for w in words] +
                                        ["<|startoftext|>", "<|endoftext|>"])}
    merges = ["#version: 0.2"]
    for w in words:  # merge characters left to right into the whole word
        pieces = list(w[:-1]) + [w[-1] + "</w>"]
        while len(pieces) > 1:
            merged = pieces[0] + pieces[1]
            merges.append(f"{pieces[0]} {pieces[1]}")
            vocab.setdefault(merged, len(vocab))
            pieces = [merged] + pieces[2:]
    path.mkdir()
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("\n".join(dict.fromkeys(merges)) + "\n")
    CLIPTokenizer(str(path / "vocab.json"), str(path / "merges.txt"))  # the files form a valid tokenizer
    cfg = CLIPTextConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=32, projection_dim=8,
                         bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
                         pad_token_id=vocab["<|endoftext|>"])
    torch.manual_seed(0)
    CLIPTextModelWithProjection(cfg).save_pretrained(path)
    return path


def test_clip_backend_loads_a_local_directory_and_marks_special_tokens(tmp_path):
    enc = get_text_encoder("clip", path=str(tiny_clip(tmp_path / "clip")), max_length=12)
    f = enc.encode(["a red circle", "a blue square left of a red circle"])
    assert f.tokens.shape == (2, 12, 16) and f.global_.shape == (2, 8)
    assert f.valid.sum(1).tolist() == [5, 10]  # SOT + words + EOT
    assert f.special[0, 0] and f.special[0, 4] and not f.special[0, 1:4].any()
    assert enc.token_embedding_matrix().shape[1] == 16
    assert enc.decode_ids(enc.tokenize_words(["circle"])[0]).strip() == "circle"
