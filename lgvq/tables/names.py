"""One name per model row, wherever a row is shown (tables, report figures, captions).

A row is a (tokenizer config key, variant) pair. The tokenizers the paper has get the paper's
spelling (VQ-VAE, VQ-GAN, CVQ, VQCT); any other entry (a user's tokenizer, a published
checkpoint) is shown by its config key, so the name leads back to the config. The variant
follows as a suffix: "+LG" for all three LG losses, "+Lmtp+Lras" for an ablation's subset
(Table 2's terms), "+<variant>" for anything else.
"""

from __future__ import annotations

# config key -> the paper's spelling (FSQ is not in the paper; it is spelled as its own paper does)
TOKENIZER_NAMES: dict[str, str] = {"vqvae": "VQ-VAE", "vqgan": "VQ-GAN", "cvq": "CVQ", "vqct": "VQCT", "fsq": "FSQ"}

LG_TERMS = ("gsa", "mtp", "ras")  # Table 2's loss terms L_gsa, L_mtp, L_ras
ANY_TOKENIZER = "*"  # a reference row's tokenizer when it depends on no tokenizer run (lgvq.tables.build, .targets)


def tokenizer_name(tokenizer: str) -> str:
    return TOKENIZER_NAMES.get(tokenizer, tokenizer)


def variant_suffix(variant: str) -> str:
    """"" for base, "+LG" for all LG losses, "+Lmtp+Lgsa" for an ablation variant "mtp-gsa"."""
    if variant == "base":
        return ""
    if variant == "lg":
        return "+LG"
    terms = variant.split("-")
    if all(t in LG_TERMS for t in terms):
        return "".join(f"+L{t}" for t in terms)
    return f"+{variant}"


def display_name(tokenizer: str, variant: str = "base", how: str | None = None) -> str:
    """The row name of a tokenizer run; `how`: how its weights came when not trained from scratch
    ("frozen", "fine-tuned"), shown in brackets."""
    return tokenizer_name(tokenizer) + variant_suffix(variant) + (f" ({how})" if how else "")
