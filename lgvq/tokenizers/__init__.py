"""Image tokenizers. The built-in ones by registry name (`class:` in a tokenizer entry), as import
paths: the DAG checks a config's names against this table without importing torch."""

BUILTIN: dict[str, str] = {
    "vqvae": "lgvq.tokenizers.vqvae:VQVAE",
    "vqgan": "lgvq.tokenizers.vqgan:VQGAN",
    "cvq": "lgvq.tokenizers.cvq:CVQ",
    "vqct": "lgvq.tokenizers.vqct:VQCT",
    "fsq": "lgvq.tokenizers.fsq:FSQTokenizer",
}

from lgvq.tokenizers.needs import Needs  # noqa: E402  (torch-free)

# The built-ins' `needs` as their classes declare them (default: Needs()), readable without
# importing torch: the Snakefile asks for every run while it builds the DAG, and importing the
# classes would add seconds to each parse. tests/test_tokenizers.py checks each against its class.
# A tokenizer outside this table (plug-in, entry point, import path) is asked directly.
BUILTIN_NEEDS: dict[str, Needs] = {"vqct": Needs(word_embeddings=True)}
