"""Second stage on a frozen tokenizer's codes (Tables 5, 6, 7, 10).

registry.py   `Stage2Task` (conditions, generator, loss, sampling, the table it fills) and the
              `STAGE2_TASKS` registry; one task per file: unconditional.py, completion.py,
              semantic.py, t2i_diffusion.py, t2i_ar.py (conditions.py: the caption features the
              text-to-image tasks share; model.py: the module every task trains)
gpt.py        decoder-only transformer over the code sequence with an optional condition
              prefix, sampled with a key/value cache (temperature, top-k, top-p):
              unconditional generation, image completion, semantic synthesis, and the
              autoregressive text-to-image option (text prefix)
diffusion.py  discrete diffusion over codes in the VQ-Diffusion setting (mask-and-replace
              corruption, x0-parameterised reverse process) with cross-attention to the
              frozen text features: text-to-image
labelmap_vq.py  semantic synthesis' conditioning stage (a VQ model of label maps)
"""
