"""Metrics, free of model code (they take arrays, tensors, folders and callables).

fid.py / extractors.py   FID and KID through clean-fid / torchmetrics with a named feature extractor
image.py                 PSNR and SSIM per image on uint8 RGB
captions.py              BLEU-4, METEOR, ROUGE-L, CIDEr-D via pycocoevalcap's scorers
vqa.py                   COCO-QA accuracy and WUPS, VQA-v2 soft accuracy
grounding.py             box IoU and accuracy at IoU > 0.5
codebook.py              codebook usage, perplexity, dead codes
attributes.py            attribute accuracy of generated images (embedded data)
catalogue.py             every metric's direction and scale (fraction -> %), declared once
cli.py                   `lgvq metrics fid`: FID/KID between two image folders

Submodules are imported on demand: importing this package loads neither torch nor Java.
"""
