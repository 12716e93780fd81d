"""Image tokenizers. The built-in ones by registry name (`class:` in a tokenizer entry), as import
paths: the DAG checks a config's names against this table without importing torch."""

BUILTIN: dict[str, str] = {
    "vqvae": "lgvq.tokenizers.vqvae:VQVAE",
    "vqgan": "lgvq.tokenizers.vqgan:VQGAN",
    "cvq": "lgvq.tokenizers.cvq:CVQ",
    "vqct": "lgvq.tokenizers.vqct:VQCT",
    "fsq": "lgvq.tokenizers.fsq:FSQTokenizer",
    # published checkpoints (frozen via `checkpoint:`, or fine-tuned via `init_from:`)
    "taming_vqgan": "lgvq.tokenizers.pretrained.taming_vqgan:TamingVQGAN",
    "open_magvit2": "lgvq.tokenizers.pretrained.open_magvit2:OpenMagvit2",
    "llamagen_vq": "lgvq.tokenizers.pretrained.llamagen_vq:LlamaGenVQ",
}

# Classes that adapt a published tokenizer: an entry needs `checkpoint` (frozen) or `init_from` (fine-tune).
PRETRAINED: tuple[str, ...] = ("taming_vqgan", "open_magvit2", "llamagen_vq")
