"""Does a trained text-to-image generator use its caption, and what does its tokenizer allow? (issue 23)

On a finished stage-2 run (its checkpoint, the tokenizer's codes, the shapes-cnn classifier), without
retraining anything:
- validation cross-entropy of the codes given their own captions, given another image's caption (the
  validation split shuffled), and given all-zero text features: a generator that reads its caption has
  true < shuffled;
- attribute accuracy of the tokenizer's own decoding of the real test codes (the `decoded-codes` ceiling:
  the most a second stage reaches through this tokenizer);
- the generator's samples at several temperatures / top-k (and `--guidance` scales), scored against their own captions and against
  the next condition's (caption_following = the difference).

    python benchmarks/probe_t2i.py --config config/medium.yaml --results-root <clone> --out benchmarks/results/t2i_probe_cpu.json

`--decoded-only` measures only what the tokenizer allows (its decoded test codes, and the real test images, read
by the classifier): no stage-2 run is needed, only the tokenizer run and its encoded test codes. `--extractor`
reads them with another shapes-cnn (a model.pt, e.g. a profile's trained on `eval.shapes_cnn_images`).

`--results-root` is the folder the run's relative `results_dir` lives under (a clone that ran the profile).
Rows are appended to --out (one per config, run and sampling setting).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lgvq.config import load_config  # noqa: E402
from lgvq.io import atomic_write_json  # noqa: E402
from lgvq.manifest import git_revision  # noqa: E402

SAMPLING = ((1.0, None), (0.7, None), (1.0, 20))


def probe_decoded(cfg: dict, dataset: str, tokenizer: str, variant: str, seed: int,
                  extractor_path: Path | None = None) -> dict:
    """The tokenizer's decoded test codes and the real test images, read by the classifier."""
    from lgvq.data.attributes import CAPTION_SCORED, caption_attribute_vector
    from lgvq.metrics.attributes import CaptionFollowing, mismatched
    from lgvq.metrics.extractors import ShapesCNNExtractor
    from lgvq.metrics.image import psnr_per_image, to_uint8
    from lgvq.pipeline import paths
    from lgvq.pipeline.artifacts import CodeTable, eval_images, fid_extractor
    from lgvq.pipeline.tokenizer import load_tokenizer

    R = cfg["results_dir"]
    extractor = ShapesCNNExtractor.load(extractor_path) if extractor_path else fid_extractor(cfg, dataset)
    data, test = eval_images(cfg, dataset, limit=cfg["datasets"][dataset]["eval_images"])
    codes = CodeTable(paths.tokenizer_dir(R, dataset, tokenizer, variant, seed), ("test",))
    tok = load_tokenizer(cfg, dataset, tokenizer, variant, seed).eval()
    wanted = torch.as_tensor(np.stack([caption_attribute_vector(r.captions[0]) for r in test]))
    other, mask = torch.stack(mismatched(wanted)), torch.as_tensor(CAPTION_SCORED)
    out: dict = {"run": [dataset, tokenizer, variant, seed], "grid": list(codes.grid),
                 "tokenizer_params": cfg["tokenizers"][tokenizer]["params"], "tokenizer_steps": cfg["train"]["steps"],
                 "extractor": str(extractor_path or "the config's"), "extractor_training": extractor.training_summary()}
    with torch.no_grad():
        real = torch.stack([data[i]["image"] for i in range(len(data))])
        decoded = tok.decode_codes(codes.batch([codes(r.image_id) for r in test], "cpu")).clamp(-1, 1)
        for name, images in (("real_images", real), ("decoded_codes", decoded)):
            f = CaptionFollowing()
            f.add(extractor, images, wanted, other, mask)
            out[name] = f.metrics()
        out["decoded_psnr_db"] = float(psnr_per_image(to_uint8(decoded), to_uint8(real)).mean())
    return out


def probe(cfg: dict, task: str, dataset: str, tokenizer: str, variant: str, seed: int,
          guidance: tuple[float, ...] = (1.0,)) -> dict:
    from lgvq.data.attributes import CAPTION_SCORED, caption_attribute_vector
    from lgvq.metrics.attributes import CaptionFollowing, mismatched
    from lgvq.pipeline import paths
    from lgvq.pipeline.artifacts import CodeTable, fid_extractor, text_cache
    from lgvq.pipeline.common import dataset_source
    from lgvq.pipeline.tokenizer import load_tokenizer
    from lgvq.settings import stage2_settings
    from lgvq.stage2.registry import STAGE2_TASKS, Stage2Context

    R, s = cfg["results_dir"], stage2_settings(cfg)
    spec = STAGE2_TASKS.get(task)
    tokdir = paths.tokenizer_dir(R, dataset, tokenizer, variant, seed)
    test_codes, val_codes = CodeTable(tokdir, ("test",)), CodeTable(tokdir, ("val",))
    n_codes = int(np.load(paths.codebook_file(R, dataset, tokenizer, variant, seed)).shape[0])
    source = dataset_source(cfg, dataset)
    test = source.records("test")[: cfg["datasets"][dataset]["eval_images"]]
    val = source.records("val")[: s.val_items]
    ctx = Stage2Context(s, dataset, source.records("train"), test, test_codes.grid, n_codes, "cpu",
                        text_cache=lambda: text_cache(cfg, dataset), label_map_vq=None, label_map=None)
    cond = spec.conditions(ctx)
    model = spec.build(ctx, cond)
    checkpoint = torch.load(paths.stage2_dir(R, task, dataset, tokenizer, variant, seed) / "checkpoint.pt",
                            map_location="cpu", weights_only=False)
    model.load_state_dict(checkpoint["modules"]["head"])
    model.eval()
    out: dict = {"task": task, "run": [dataset, tokenizer, variant, seed], "steps": checkpoint["step"]}

    codes = val_codes.batch([val_codes(r.image_id) for r in val], "cpu")
    shuffled = list(range(len(val)))
    random.Random(0).shuffle(shuffled)
    with torch.no_grad():
        for name, records in (("true", val), ("shuffled", [val[i] for i in shuffled])):
            torch.manual_seed(0)  # the diffusion loss draws its timesteps
            out[f"val_ce_{name}_caption"] = float(spec.loss(model, codes, cond.of(records, [r.captions[0] for r in records])))
        tokens, valid = cond.of(val, [r.captions[0] for r in val])
        torch.manual_seed(0)
        out["val_ce_zero_text"] = float(spec.loss(model, codes, (torch.zeros_like(tokens), valid)))

    extractor = fid_extractor(cfg, dataset)
    tok = load_tokenizer(cfg, dataset, tokenizer, variant, seed)
    mask = torch.as_tensor(CAPTION_SCORED)
    captions = [r.captions[0] for r in test]
    wanted = torch.as_tensor(np.stack([caption_attribute_vector(c) for c in captions]))
    other = torch.stack(mismatched(wanted))

    def scored(images: torch.Tensor) -> dict:
        f = CaptionFollowing()
        f.add(extractor, images, wanted, other, mask)
        return f.metrics()

    with torch.no_grad():
        real = tok.decode_codes(test_codes.batch([test_codes(r.image_id) for r in test], "cpu")).clamp(-1, 1)
        out["decoded_codes"] = scored(real)
        out["samples"] = []
        for scale in guidance:
            for temperature, top_k in SAMPLING:
                settings = dataclasses.replace(s, temperature=temperature, top_k=top_k, guidance_scale=scale)
                g = torch.Generator().manual_seed(1)
                x = tok.decode_codes(spec.generate(model, len(test), cond.of(test, captions), None, g, "cpu", settings))
                out["samples"].append({"guidance_scale": scale, "temperature": temperature, "top_k": top_k,
                                       **scored(x.clamp(-1, 1))})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--results-root", type=Path, required=True, help="folder the config's results_dir is relative to")
    ap.add_argument("--task", default="t2i_ar", choices=("t2i_ar", "t2i_diffusion"))
    ap.add_argument("--dataset", default="shapes")
    ap.add_argument("--tokenizer", default="vqgan")
    ap.add_argument("--variant", default="base")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--guidance", type=float, nargs="+", default=[1.0],
                    help="classifier-free guidance scales to sample at (> 1 needs a run trained with stage2.cond_dropout)")
    ap.add_argument("--label", default="", help="what this run is (e.g. 'medium at 1000 tokenizer steps')")
    ap.add_argument("--decoded-only", action="store_true", help="only the tokenizer's decoded test codes (no stage-2 run)")
    ap.add_argument("--extractor", type=Path, default=None, help="a shapes-cnn model.pt to read the images with")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    a.out = a.out.resolve()  # both before the chdir into --results-root
    extractor = a.extractor.resolve() if a.extractor else None
    torch.set_num_threads(1)
    cfg = load_config(Path(a.config).resolve())
    os.chdir(a.results_root)
    measured = (probe_decoded(cfg, a.dataset, a.tokenizer, a.variant, a.seed, extractor) if a.decoded_only
                else probe(cfg, a.task, a.dataset, a.tokenizer, a.variant, a.seed, tuple(a.guidance)))
    row = {"config": a.config, "label": a.label, **measured}
    print(json.dumps(row, indent=1))
    earlier = json.loads(a.out.read_text())["rows"] if a.out.is_file() else []
    atomic_write_json(a.out, {"benchmark": "probe_t2i", "git": git_revision(ROOT), "rows": [*earlier, row]})


if __name__ == "__main__":
    main()
