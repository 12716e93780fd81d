"""`lgvq metrics fid`: FID (and optionally KID) between two image folders, from the command line.

Wiring (in lgvq/cli.py): `add_fid_parser(metrics_subparsers)`; the parser's `fn` is `main_fid`.
Prints one JSON object (and writes it atomically to --out when given), e.g.
{"label": "FID[shapes-cnn]", "value": 12.3, "n_a": 500, "n_b": 500, "description": "..."}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_fid_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("fid", help="FID (and KID) between two image folders with a named feature extractor")
    p.add_argument("--images", required=True, help="folder of evaluated images (PNG/JPEG)")
    p.add_argument("--reference", required=True, help="folder of reference images (its statistics are cached)")
    p.add_argument("--extractor", required=True, choices=("inception", "shapes-cnn"))
    p.add_argument("--weights", required=True,
                   help="inception: clean-fid's inception-2015-12-05.pt; shapes-cnn: the model.pt written by "
                        "`lgvq metrics train-extractor` (its .json sidecar beside it)")
    p.add_argument("--cache-dir", default=None, help="where reference statistics are cached (npz)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--kid", action="store_true", help="also compute KID (torchmetrics, subsets of min(1000, N))")
    p.add_argument("--out", default=None, help="also write the JSON here")
    p.set_defaults(fn=main_fid)
    return p


def load_extractor(kind: str, weights: str | Path):
    """The extractor named `kind` from its weights file (clear ArtifactError when missing)."""
    from lgvq.metrics.extractors import InceptionExtractor, ShapesCNNExtractor

    if kind == "inception":
        return InceptionExtractor(weights)
    if kind == "shapes-cnn":
        return ShapesCNNExtractor.load(weights)
    raise ValueError(f"unknown FID extractor {kind!r} (inception | shapes-cnn)")


def main_fid(args: argparse.Namespace) -> int:
    from lgvq.io import atomic_write_json
    from lgvq.metrics.fid import compute_fid, compute_kid

    extractor = load_extractor(args.extractor, args.weights)
    result = compute_fid(args.images, args.reference, extractor=extractor, cache_dir=args.cache_dir,
                         batch_size=args.batch_size)
    out = result.to_dict()
    if args.kid:
        kid = compute_kid(args.images, args.reference, extractor=extractor, batch_size=args.batch_size)
        out["KID"] = {"label": f"KID[{kid.extractor}]", "mean": kid.mean, "std": kid.std,
                      "description": kid.description}
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        atomic_write_json(args.out, out)
    return 0
