"""What a tokenizer class needs from the pipeline, declared on the class (`needs = Needs(...)`).

The pipeline reads this instead of knowing classes by name: a new tokenizer with VQCT's need
(a codebook made from word embeddings) declares it and gets the same inputs, with no edit
outside its own file. Torch-free, so the config layer can import it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Needs:
    # A constructor argument `text_cache`: the dataset's lgvq.text.cache.TextCache (frozen caption
    # features and token embeddings). The job then waits for the cache and its hash covers the
    # text encoder (also so for `word_embeddings`, which is built from the cache).
    text_cache: bool = False
    # A constructor argument `word_embeddings: Callable[[int], Tensor]`: given n, the (n, D_text)
    # frozen embeddings of the n most frequent caption words (lgvq.pipeline.tokenizer).
    word_embeddings: bool = False
    # The class cannot be trained here (a wrapper of a pretrained model): every config entry of
    # it must set `checkpoint:`, evaluated frozen.
    frozen_checkpoint: bool = False
    # The class adapts a published model (lgvq/tokenizers/pretrained/): every config entry of it sets
    # `checkpoint:` (evaluated frozen) or `init_from:` (fine-tuned from those weights).
    pretrained_weights: bool = False

    @property
    def reads_text(self) -> bool:
        return self.text_cache or self.word_embeddings
