"""Image tokenizers. The built-in ones by registry name (`class:` in a tokenizer entry), as import
paths: the DAG checks a config's names against this table without importing torch."""

BUILTIN: dict[str, str] = {
    "vqvae": "lgvq.tokenizers.vqvae:VQVAE",
    "vqgan": "lgvq.tokenizers.vqgan:VQGAN",
    "cvq": "lgvq.tokenizers.cvq:CVQ",
    "vqct": "lgvq.tokenizers.vqct:VQCT",
    "fsq": "lgvq.tokenizers.fsq:FSQTokenizer",
}
