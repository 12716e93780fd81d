"""Second stage on a frozen tokenizer's codes (Tables 5, 6, 7, 10).

gpt.py        decoder-only transformer over the code sequence with an optional condition
              prefix, sampled with a key/value cache (temperature, top-k, top-p):
              unconditional generation, image completion, semantic synthesis, and the
              autoregressive text-to-image option (text prefix)
diffusion.py  discrete diffusion over codes in the VQ-Diffusion setting (mask-and-replace
              corruption, x0-parameterised reverse process) with cross-attention to the
              frozen text features: text-to-image
"""
