"""Adapters of published tokenizers (taming VQGAN, Open-MAGVIT2 LFQ, LlamaGen VQ): frozen
checkpoints evaluated in the harness's protocol, or a starting point for fine-tuning
(`init_from`). See docs/pretrained_tokenizers.md."""
