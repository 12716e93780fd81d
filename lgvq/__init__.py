"""lgvq: a benchmark harness for LG-VQ (language-guided codebook learning)."""

__version__ = "0.1.0"
