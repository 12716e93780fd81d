"""`lgvq stage2 run --task ...`: train a second-stage model on a frozen tokenizer's train-split
codes, generate for the test conditions, decode with the tokenizer and score the images.

Tasks and what conditions them (Tables 5, 6, 7, 10):
    unconditional   nothing                                  CodeGPT
    completion      the top half of a test image's code grid  CodeGPT (given codes kept bit-exact)
    semantic        the test image's label map, tokenised by  CodeGPT with a label-code prefix
                    a VQ model trained on label maps (VQ-GAN's conditioning stage, `labelmap_vq`)
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

from lgvq.io import ArtifactError, atomic_path, atomic_torch_save, atomic_write_json
from lgvq.manifest import RunRecord, config_hash
from lgvq.metrics.record import MetricRecord
from lgvq.pipeline import jobs, paths
from lgvq.pipeline.common import dataset_source, device as pick_device, process_group
from lgvq.pipeline.artifacts import CodeTable

TASKS = ("unconditional", "completion", "semantic", "t2i_diffusion", "t2i_ar")
TABLE_KIND = {"unconditional": "unconditional", "completion": "completion", "semantic": "semantic_synthesis",
              "t2i_diffusion": "text_to_image", "t2i_ar": "text_to_image"}
# Text-to-image has two generators in one table: the AR option's metrics carry this tag.
METRIC_TAG = {"t2i_ar": "AR-GPT"}


def label_map_at(record, size: int) -> np.ndarray:
    """The record's label map (class ids) at `size` x `size`, nearest-neighbour resized."""
    from PIL import Image

    from lgvq.data.formats import read_label_map

    if record.mask_path is None:
        raise ArtifactError(f"semantic synthesis needs label maps: image {record.path} has none")
    lm = read_label_map(record.mask_path)
    if lm.shape != (size, size):
        lm = np.asarray(Image.fromarray(lm).resize((size, size), Image.NEAREST))
    return lm.astype(np.int64)


class LabelMaps:
    """The records' label maps, read when a batch asks for them: the split's maps are never stacked
    (all CelebA maps as int64 would be ~12.6 GB)."""

    def __init__(self, records, size: int) -> None:
        self.records, self.size = records, size

    def __len__(self) -> int:
        return len(self.records)

    def batch(self, idx) -> Tensor:
        return torch.as_tensor(np.stack([label_map_at(self.records[int(i)], self.size) for i in idx]))

    def n_classes(self) -> int:
        """1 + the largest class id over all maps (one pass, one map held at a time)."""
        return 1 + max(int(label_map_at(r, self.size).max()) for r in self.records)


def train_labelmap_vq(cfg: dict[str, Any], dataset: str) -> Path:
    """Train the label-map VQ of a dataset on its train split (rule `labelmap_vq`)."""
    from lgvq.downstream.task import HeadTask
    from lgvq.stage2.labelmap_vq import LabelMapVQ
    from lgvq.train.loop import seed_everything, shuffled_batches, train_loop

    R, s = cfg["results_dir"], cfg["stage2"]
    ds = cfg["datasets"][dataset]
    out = paths.labelmap_vq_dir(R, dataset)
    seed = cfg["eval"]["mask_eval_seed"]
    job = jobs.labelmap_vq(cfg, dataset)
    h = config_hash(job)
    record = RunRecord("stage2/labelmap_vq", job, seed=seed, config_hash_short=h)
    recs = dataset_source(cfg, dataset).records("train")
    maps = LabelMaps(recs, ds["image_size"])
    n_classes = maps.n_classes()
    seed_everything(seed)
    meta = {"n_classes": n_classes, "image_size": ds["image_size"], "grid": _tokenizer_grid(cfg, dataset),
            "n_embed": s["labelmap_codes"], "config_hash": h}
    model = LabelMapVQ(n_classes, ds["image_size"], meta["grid"], n_embed=meta["n_embed"])
    dev = pick_device(cfg)
    model.to(dev)
    trainer = HeadTask(model, lambda m, b: m.loss(b), lr=s["lr"], fast_path=s["fast_path"],
                       cpu_bf16=s["cpu_bf16"])
    train_loop(trainer,
               shuffled_batches(len(maps), s["batch_size"], seed, lambda idx, _: maps.batch(idx).to(dev)), out_dir=out,
               max_steps=s["steps"], seed=seed, config_hash=h, ckpt_every=s["ckpt_every"],
               log_every=max(1, min(10, s["steps"])), desc=f"label-map VQ {dataset}")
    model.eval()
    first = maps.batch(range(min(256, len(maps))))
    acc = float((model.reconstruct(first.to(dev)).cpu() == first).float().mean())
    atomic_torch_save(out / "model.pt", {"state": model.state_dict(), "meta": meta})
    atomic_write_json(out / "meta.json", {**meta, "train_pixel_accuracy": acc})
    record.write(out, train_pixel_accuracy=acc, execution=trainer.execution.record())
    return out / "model.pt"


def _tokenizer_grid(cfg: dict[str, Any], dataset: str) -> int:
    """The one code grid of the tokenizers semantic synthesis runs on (they share one label-map VQ)."""
    grids = jobs.tokenizer_grid(cfg, dataset)
    if len(grids) != 1:
        raise ArtifactError(f"tokenizers of dataset {dataset} have different code grids {grids}; "
                            "semantic synthesis needs one label-map VQ grid")
    return grids[0]


def load_labelmap_vq(cfg: dict[str, Any], dataset: str):
    from lgvq.stage2.labelmap_vq import LabelMapVQ

    path = paths.labelmap_vq_model(cfg["results_dir"], dataset)
    if not path.is_file():
        raise ArtifactError(f"label-map VQ not found: {path} (rule labelmap_vq / `lgvq stage2 labelmap-vq`)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is reported by name
        raise ArtifactError(f"corrupt label-map VQ {path}: {e}") from e
    meta = payload["meta"]
    model = LabelMapVQ(meta["n_classes"], meta["image_size"], meta["grid"], n_embed=meta["n_embed"])
    model.load_state_dict(payload["state"])
    return model.eval(), meta


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
            flat = self.net.sample(*cond, generator=generator, temperature=s["temperature"], fast=s["fast_path"])
        else:
            flat = self.net.sample(n, prefix=self.prefix(cond), given=given, temperature=s["temperature"],
                                   top_k=s["top_k"], top_p=s["top_p"], generator=generator, device=device,
                                   fast=s["fast_path"])
        return flat.view(n, *self.grid)


def run(cfg: dict[str, Any], task: str, dataset: str, tokenizer: str, variant: str, seed: int) -> Path:
    if task not in TASKS:
        raise ArtifactError(f"unknown second-stage task '{task}' (tasks: {', '.join(TASKS)})")
    from lgvq.downstream.task import HeadTask
    from lgvq.metrics.image import to_uint8
    from lgvq.pipeline.artifacts import fid_extractor, png_folder, reference_folder, score_fid, text_cache, write_pngs
    from lgvq.pipeline.tokenizer import load_tokenizer
    from lgvq.train.loop import seed_everything, shuffled_batches, train_loop

    R, s = cfg["results_dir"], cfg["stage2"]
    h = config_hash(jobs.stage2_training(cfg, task, dataset, tokenizer, variant, seed))  # the checkpoint's
    work = paths.stage2_dir(R, task, dataset, tokenizer, variant, seed)
    out = paths.eval_dir(R, f"stage2-{task}", dataset, tokenizer, variant, seed)
    record = RunRecord(f"stage2/{task}", jobs.stage2_job(cfg, task, dataset, tokenizer, variant, seed),
                       seed=seed, training_hash=h)
    dist, dev = process_group(cfg)  # one process unless torchrun started several (stage2.gpus > 1)
    tokdir = paths.tokenizer_dir(R, dataset, tokenizer, variant, seed)
    train_codes, test_codes = CodeTable(tokdir, ("train",)), CodeTable(tokdir, ("test",))
    grid = tuple(train_codes.codes.shape[1:])
    n_codes = int(np.load(paths.codebook_file(R, dataset, tokenizer, variant, seed), allow_pickle=False).shape[0])
    source = dataset_source(cfg, dataset)
    train_recs, test_recs = source.records("train"), source.records("test")[: cfg["datasets"][dataset]["eval_images"]]

    # --- conditions -------------------------------------------------------------------------------
    cache = text_cache(cfg, dataset) if task.startswith("t2i") else None
    n_classes = 0
    label_codes: dict[int, np.ndarray] = {}
    if task == "semantic":
        lm_vq, lm_meta = load_labelmap_vq(cfg, dataset)
        if lm_vq.grid != grid[0] or grid[0] != grid[1]:
            raise ArtifactError(f"the label-map VQ encodes to {lm_vq.grid}x{lm_vq.grid}, the tokenizer to {grid}")
        n_classes = lm_meta["n_embed"]
        size = cfg["datasets"][dataset]["image_size"]
        for r in [*train_recs, *test_recs]:
            lm = torch.as_tensor(label_map_at(r, size))[None]
            label_codes[r.image_id] = lm_vq.encode(lm)[0].numpy()

    def condition(recs, captions):
        if task == "semantic":
            return torch.as_tensor(np.stack([label_codes[r.image_id] for r in recs]), device=dev)
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

    trainer = HeadTask(model, lambda m, b: {"ce": m.loss(*b)}, lr=s["lr"], dist=dist, fast_path=s["fast_path"],
                       cpu_bf16=s["cpu_bf16"])
    train_loop(trainer,
               shuffled_batches(len(train_recs), s["batch_size"], seed, make_batch, dist=dist, key="stage2.batch_size"), out_dir=work,
               max_steps=s["steps"], seed=seed, config_hash=h, ckpt_every=s["ckpt_every"],
               log_every=max(1, min(10, s["steps"])), desc=f"stage2 {task}/{tokenizer}/{variant}/seed{seed}", dist=dist)
    model.eval()

    # --- generate, decode, score -------------------------------------------------------------------
    # Sampling is spread over the ranks: chunk c (50 conditions) is drawn by rank c % world with its own
    # generator seeded by c, so the samples do not depend on how many processes draw them. Rank 0
    # gathers them, then scores and writes alone.
    from lgvq.train.distributed import chunks_on_main

    tok = load_tokenizer(cfg, dataset, tokenizer, variant, seed).to(dev)
    sample_seed = cfg["eval"]["mask_eval_seed"] * 7919 + seed
    captions = [r.captions[0] for r in test_recs]
    n_half = grid[0] // 2

    def draw(c: int) -> Tensor:
        i, recs = c * 50, test_recs[c * 50 : c * 50 + 50]
        g = torch.Generator(device=dev).manual_seed(sample_seed * 100_003 + c)
        real = test_codes.batch([test_codes(r.image_id) for r in recs], dev)
        given = real[:, :n_half].flatten(1) if task == "completion" else None
        codes = model.generate(len(recs), condition(recs, captions[i : i + 50]), s, g, dev, given=given)
        if given is not None and not torch.equal(codes[:, :n_half].flatten(1), given):
            raise RuntimeError("completion changed the given half of the code grid")
        return tok.decode_codes(codes).clamp(-1, 1).cpu()

    chunks = chunks_on_main(-(-len(test_recs) // 50), draw, dist)  # lazy: draws as it is iterated
    if not dist.is_main:
        for _ in chunks:  # this rank's share of the samples; rank 0 scores and writes
            pass
        return out / "metrics.json"
    extractor = fid_extractor(cfg, dataset)  # before sampling: a missing extractor fails before any sample
    tag = METRIC_TAG.get(task)
    scores_attributes = task.startswith("t2i") and extractor is not None and extractor.name == "shapes-cnn"
    if scores_attributes:
        from lgvq.data.attributes import ATTRIBUTE_NAMES, caption_attribute_vector
        from lgvq.metrics.attributes import attribute_hits

        attr_mask = torch.as_tensor([not n.startswith("count:") for n in ATTRIBUTE_NAMES])
    # Rank 0 writes and scores the samples 50 at a time as they arrive (only a round of chunks is held);
    # the folder replaces an earlier one once all are written, and the FID reads them back from disk.
    samples_dir, grid_images, right, scored = out / "samples", [], 0, 0
    with png_folder(samples_dir) as tmp_dir:
        for c, x in chunks:
            recs = test_recs[c * 50 : c * 50 + 50]
            write_pngs(to_uint8(x), [f"{r.image_id:012d}" for r in recs], tmp_dir)
            grid_images.append(x[: 16 - sum(len(t) for t in grid_images)])
            if scores_attributes:
                wanted = torch.as_tensor(np.stack([caption_attribute_vector(cap) for cap in captions[c * 50 : c * 50 + 50]]))
                hit, cells = attribute_hits(extractor, x, wanted, attr_mask)
                right, scored = right + hit, scored + cells
    _sample_grid(torch.cat(grid_images), out / "samples_grid.png")

    # FID off: the samples and their grid are still written above, for a person to look at
    fid = score_fid(samples_dir, reference_folder(cfg, dataset) if extractor is not None else None, extractor,
                    paths.dataset_dir(R, dataset) / "eval" / "fid_cache", tag=tag,
                    note_suffix=f"; one sample per test condition, seed {seed}")
    metrics, notes = fid.metrics, fid.notes
    if scores_attributes:
        key = f"attribute_accuracy[{tag}]" if tag else "attribute_accuracy"
        metrics[key] = right / scored
        notes[key] = ("shapes-cnn reads each sample; shape and colour slots compared with those its caption names "
                      f"(count not scored); {len(captions)} captions")
    MetricRecord(
        TABLE_KIND[task], dataset, tokenizer, variant, seed, metrics, notes,
        labels={"generator": f"{type(model.net).__name__}: width {s['width']}, {s['layers']} layers, {s['heads']} heads, "
                             f"{s['steps']} steps (batch {s['batch_size']})"
                             + (f", {s['diffusion_steps']} diffusion steps" if task == "t2i_diffusion" else ""),
                "text_encoder": cache.describe() if cache else None},
        not_computed=fid.not_computed, extra={"task": task}).write(out)
    record.write(out, fid=fid.description, work_dir=str(work), processes=dist.world,
                 execution=trainer.execution.record())
    return out / "metrics.json"


def _sample_grid(x: Tensor, path: Path) -> None:
    from lgvq.imagegrid import save_png_grid

    with atomic_path(path) as tmp:
        save_png_grid(x * 0.5 + 0.5, tmp, nrow=8)
