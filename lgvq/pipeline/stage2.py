"""`lgvq stage2 run --task ...`: train a second-stage model on a frozen tokenizer's train-split
codes, generate for the test conditions, decode with the tokenizer and score the images.

Tasks and what conditions them (Tables 5, 6, 7, 10):
    unconditional   nothing                                  CodeGPT
    completion      the top half of a test image's code grid  CodeGPT (given codes kept bit-exact)
    semantic        the test image's label map, pooled to     CodeGPT with a label-token prefix
                    the code grid (majority class per cell)
    t2i_diffusion   a test caption's frozen text features     TextToCodeDiffusion (VQ-Diffusion)
    t2i_ar          a test caption's frozen text features     CodeGPT with a text prefix
One generated image per condition for the first `eval_images` test images, so the FID reference
(the same first `eval_images` real test images) and the samples have equal counts. On the
embedded data the shapes-cnn classifier also scores whether text-to-image samples show the
shapes and colours their caption names (attribute accuracy).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lgvq.config import tokenizer_job_slice
from lgvq.io import ArtifactError, atomic_path, atomic_write_json
from lgvq.manifest import RunRecord, config_hash
from lgvq.pipeline import paths
from lgvq.pipeline.common import dataset_source, device as pick_device
from lgvq.pipeline.downstream import CodeTable

TASKS = ("unconditional", "completion", "semantic", "t2i_diffusion", "t2i_ar")
TABLE_KIND = {"unconditional": "unconditional", "completion": "completion", "semantic": "semantic_synthesis",
              "t2i_diffusion": "text_to_image", "t2i_ar": "text_to_image"}
# Text-to-image has two generators in one table: the AR option's metrics carry this tag.
METRIC_TAG = {"t2i_ar": "AR-GPT"}


def pooled_label_map(label_map: np.ndarray, grid: tuple[int, int], n_classes: int) -> np.ndarray:
    """(H, W) class ids -> (h, w): the most frequent class in each cell (ties: the lower id)."""
    H, W = label_map.shape
    h, w = grid
    if H % h or W % w:
        raise ArtifactError(f"label map {H}x{W} does not tile into the {h}x{w} code grid")
    cells = label_map.reshape(h, H // h, w, W // w).transpose(0, 2, 1, 3).reshape(h, w, -1)
    counts = np.stack([(cells == c).sum(-1) for c in range(n_classes)], -1)
    return counts.argmax(-1)


class Stage2Model(nn.Module):
    """The generator plus whatever turns a condition into its input (prefix embeddings)."""

    def __init__(self, task: str, n_codes: int, grid: tuple[int, int], s: dict[str, Any], *, text_dim: int = 0,
                 text_len: int = 0, n_classes: int = 0) -> None:
        super().__init__()
        from lgvq.stage2.diffusion import TextToCodeDiffusion
        from lgvq.stage2.gpt import CodeGPT

        self.task, self.grid = task, grid
        N = grid[0] * grid[1]
        size = dict(width=s["width"], layers=s["layers"], heads=s["heads"], dropout=s["dropout"])
        if task == "t2i_diffusion":
            size["layers"] = s["diffusion_layers"] or s["layers"]
            self.net = TextToCodeDiffusion(n_codes, N, text_dim, steps=s["diffusion_steps"], **size)
        else:
            n_prefix = {"semantic": N, "t2i_ar": text_len}.get(task, 0)
            self.net = CodeGPT(n_codes, N, n_prefix=n_prefix, **size)
        self.cond = None
        if task == "semantic":
            self.cond = nn.Embedding(n_classes, s["width"])
        elif task == "t2i_ar":
            self.cond = nn.Linear(text_dim, s["width"])

    def prefix(self, cond: Any) -> Tensor | None:
        if self.task == "semantic":
            return self.cond(cond.flatten(1))
        if self.task == "t2i_ar":
            tokens, valid = cond
            return self.cond(tokens) * valid[..., None]  # padded text positions contribute nothing
        return None

    def loss(self, codes: Tensor, cond: Any) -> Tensor:
        flat = codes.flatten(1)
        if self.task == "t2i_diffusion":
            return self.net.loss(flat, *cond)
        return self.net.loss(flat, self.prefix(cond))

    @torch.no_grad()
    def generate(self, n: int, cond: Any, s: dict[str, Any], generator: torch.Generator, device,
                 given: Tensor | None = None) -> Tensor:
        if self.task == "t2i_diffusion":
            flat = self.net.sample(*cond, generator=generator, temperature=s["temperature"])
        else:
            flat = self.net.sample(n, prefix=self.prefix(cond), given=given, temperature=s["temperature"],
                                   top_k=s["top_k"], top_p=s["top_p"], generator=generator, device=device)
        return flat.view(n, *self.grid)


def _job_hash(cfg, task, dataset, tokenizer, variant, seed) -> str:
    return config_hash({"tokenizer": tokenizer_job_slice(cfg, dataset, tokenizer, variant, seed),
                        "stage2": cfg["stage2"], "task": task})


def run(cfg: dict[str, Any], task: str, dataset: str, tokenizer: str, variant: str, seed: int) -> Path:
    if task not in TASKS:
        raise ArtifactError(f"unknown second-stage task '{task}' (tasks: {', '.join(TASKS)})")
    from lgvq.downstream.task import HeadTask
    from lgvq.pipeline.downstream import _epoch_batches
    from lgvq.pipeline.evaluate import _extractor, _to_uint8, _write_pngs, reference_folder
    from lgvq.pipeline.tokenizer import _text_cache, load_tokenizer
    from lgvq.train.loop import seed_everything, train_loop

    R, s = cfg["results_dir"], cfg["stage2"]
    h = _job_hash(cfg, task, dataset, tokenizer, variant, seed)
    work = paths.stage2_dir(R, task, dataset, tokenizer, variant, seed)
    out = paths.eval_dir(R, f"stage2-{task}", dataset, tokenizer, variant, seed)
    record = RunRecord(f"stage2/{task}", {"stage2": s, "task": task, "run": [dataset, tokenizer, variant, seed]},
                       seed=seed, config_hash_short=h)
    dev = pick_device(cfg)
    tokdir = paths.tokenizer_dir(R, dataset, tokenizer, variant, seed)
    train_codes, test_codes = CodeTable(tokdir, ("train",)), CodeTable(tokdir, ("test",))
    grid = tuple(train_codes.codes.shape[1:])
    n_codes = int(np.load(tokdir / "codes" / "codebook.npy", allow_pickle=False).shape[0])
    source = dataset_source(cfg, dataset)
    train_recs, test_recs = source.records("train"), source.records("test")[: cfg["datasets"][dataset]["eval_images"]]

    # --- conditions -------------------------------------------------------------------------------
    cache = _text_cache(cfg, dataset) if task.startswith("t2i") else None
    n_classes = 0
    label_maps: dict[int, np.ndarray] = {}
    if task == "semantic":
        from lgvq.data.formats import read_label_map

        for r in [*train_recs, *test_recs]:
            if r.mask_path is None:
                raise ArtifactError(f"semantic synthesis needs label maps: image {r.path} has none")
            label_maps[r.image_id] = read_label_map(r.mask_path)
        n_classes = int(max(m.max() for m in label_maps.values())) + 1
        label_maps = {i: pooled_label_map(m, grid, n_classes) for i, m in label_maps.items()}

    def condition(recs, captions):
        if task == "semantic":
            return torch.as_tensor(np.stack([label_maps[r.image_id] for r in recs]), device=dev)
        if cache is not None:
            f = cache.features([cache.row(r.image_id, c) for r, c in zip(recs, captions)])
            return f.tokens.to(dev), f.valid.to(dev)
        return None

    seed_everything(seed)
    model = Stage2Model(task, n_codes, grid, s, text_dim=cache.width if cache else 0,
                        text_len=int(cache.tokens.shape[1]) if cache else 0, n_classes=n_classes).to(dev)

    def make_batch(idx: list[int], epoch: int):
        recs = [train_recs[i] for i in idx]
        caps = [r.captions[random.Random(seed * 1_000_003 + epoch * 10_007 + i).randrange(len(r.captions))]
                for r, i in zip(recs, idx)]
        return train_codes.batch([train_codes(r.image_id) for r in recs], dev), condition(recs, caps)

    train_loop(HeadTask(model, lambda m, b: {"ce": m.loss(*b)}, lr=s["lr"]),
               _epoch_batches(len(train_recs), s["batch_size"], seed, make_batch), out_dir=work,
               max_steps=s["steps"], seed=seed, config_hash=h, ckpt_every=max(1, s["steps"] // 2),
               log_every=max(1, min(10, s["steps"])), desc=f"stage2 {task}/{tokenizer}/{variant}/seed{seed}")
    model.eval()

    # --- generate, decode, score -------------------------------------------------------------------
    tok = load_tokenizer(cfg, dataset, tokenizer, variant, seed).to(dev)
    g = torch.Generator(device=dev).manual_seed(cfg["eval"]["mask_eval_seed"] * 7919 + seed)
    captions = [r.captions[0] for r in test_recs]
    images, n_half = [], grid[0] // 2
    for i in range(0, len(test_recs), 50):
        recs = test_recs[i : i + 50]
        real = test_codes.batch([test_codes(r.image_id) for r in recs], dev)
        given = real[:, :n_half].flatten(1) if task == "completion" else None
        codes = model.generate(len(recs), condition(recs, captions[i : i + 50]), s, g, dev, given=given)
        if given is not None and not torch.equal(codes[:, :n_half].flatten(1), given):
            raise RuntimeError("completion changed the given half of the code grid")
        images.append(tok.decode_codes(codes).clamp(-1, 1).cpu())
    x = torch.cat(images)
    samples_dir = out / "samples"
    _write_pngs(_to_uint8(x), [f"{r.image_id:012d}" for r in test_recs], samples_dir)
    _sample_grid(x[:16], out / "samples_grid.png")

    from lgvq.metrics.fid import compute_fid, fid_label

    extractor = _extractor(cfg, dataset)
    fid = compute_fid(samples_dir, reference_folder(cfg, dataset), extractor=extractor,
                      cache_dir=paths.dataset_dir(R, dataset) / "eval" / "fid_cache")
    tag = METRIC_TAG.get(task)
    label = fid_label(extractor.name)
    label = f"{label[:-1]},{tag}]" if tag else label
    metrics = {label: fid.value}
    notes = {label: f"{fid.description}; one sample per test condition, seed {seed}"}
    if task.startswith("t2i") and extractor.name == "shapes-cnn":
        from lgvq.data.attributes import ATTRIBUTE_NAMES, caption_attribute_vector
        from lgvq.metrics.attributes import attribute_accuracy

        wanted = torch.as_tensor(np.stack([caption_attribute_vector(c) for c in captions]))
        mask = torch.as_tensor([not n.startswith("count:") for n in ATTRIBUTE_NAMES])
        acc = attribute_accuracy(extractor, x, wanted, mask)
        key = f"attribute_accuracy[{tag}]" if tag else "attribute_accuracy"
        metrics[key] = acc["attribute_accuracy"]
        notes[key] = ("shapes-cnn reads each sample; shape and colour slots compared with those its caption names "
                      f"(count not scored); {len(captions)} captions")
    atomic_write_json(out / "metrics.json", {
        "kind": TABLE_KIND[task], "dataset": dataset, "tokenizer": tokenizer, "variant": variant, "seed": seed,
        "task": task, "metrics": metrics, "notes": notes,
        "labels": {"generator": f"{type(model.net).__name__}: width {s['width']}, {s['layers']} layers, {s['heads']} heads, "
                                f"{s['steps']} steps (batch {s['batch_size']})"
                                + (f", {s['diffusion_steps']} diffusion steps" if task == "t2i_diffusion" else ""),
                   "text_encoder": cache.describe() if cache else None},
    })
    record.write(out, fid=fid.description, work_dir=str(work))
    return out / "metrics.json"


def _sample_grid(x: Tensor, path: Path) -> None:
    from torchvision.utils import save_image

    with atomic_path(path) as tmp:
        save_image(x * 0.5 + 0.5, tmp, nrow=8, format="png")
