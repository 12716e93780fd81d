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

from lgvq.tokenizers.needs import Needs  # noqa: E402  (torch-free)

# The built-ins' `needs` as their classes declare them (default: Needs()), readable without
# importing torch: the Snakefile asks for every run while it builds the DAG, and importing the
# classes would add seconds to each parse. tests/test_tokenizers.py checks each against its class.
# A tokenizer outside this table (plug-in, entry point, import path) is asked directly.
BUILTIN_NEEDS: dict[str, Needs] = {
    "vqct": Needs(word_embeddings=True),
    "taming_vqgan": Needs(pretrained_weights=True),
    "open_magvit2": Needs(pretrained_weights=True),
    "llamagen_vq": Needs(pretrained_weights=True),
}

# Classes that adapt a published tokenizer: an entry needs `checkpoint` (frozen) or `init_from` (fine-tune).
PRETRAINED: tuple[str, ...] = tuple(name for name, needs in BUILTIN_NEEDS.items() if needs.pretrained_weights)
