"""`lgvq stage2 run --task ...`: train a second-stage model on a frozen tokenizer's train-split
codes, generate for the test conditions, decode with the tokenizer and score the images.

The tasks (Tables 5, 6, 7, 10) are `Stage2Task` objects, one file each in lgvq/stage2/, registered
in `lgvq.stage2.registry.STAGE2_TASKS`: what conditions the generator, which generator, how it
samples, which table it fills. This module runs any of them the same way, and holds the label-map
VQ (semantic synthesis' conditioning stage, rule `labelmap_vq`).
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
from torch import Tensor

from lgvq.io import ArtifactError, atomic_path, atomic_torch_save, atomic_write_json
from lgvq.manifest import RunRecord, config_hash
from lgvq.metrics.record import MetricRecord
from lgvq.pipeline import jobs, paths
from lgvq.pipeline.common import dataset_source, device as pick_device, process_group
from lgvq.pipeline.artifacts import CodeTable
from lgvq.settings import dataset_settings, eval_settings, stage2_settings
from lgvq.stage2.registry import STAGE2_TASKS, Stage2Context


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
    from lgvq.pipeline.downstream import convergence_extra, validation
    from lgvq.train.loop import seed_everything, shuffled_batches, train_loop

    R, s = cfg["results_dir"], stage2_settings(cfg)
    ds = dataset_settings(cfg, dataset)
    out = paths.labelmap_vq_dir(R, dataset)
    seed = eval_settings(cfg).mask_eval_seed
    job = jobs.labelmap_vq(cfg, dataset)
    h = config_hash(job)
    record = RunRecord("stage2/labelmap_vq", job, seed=seed, config_hash_short=h)
    recs = dataset_source(cfg, dataset).records("train")
    maps = LabelMaps(recs, ds.image_size)
    n_classes = maps.n_classes()
    seed_everything(seed)
    meta = {"n_classes": n_classes, "image_size": ds.image_size, "grid": _tokenizer_grid(cfg, dataset),
            "n_embed": s.labelmap_codes, "ch": s.labelmap_ch, "config_hash": h}
    model = LabelMapVQ(n_classes, ds.image_size, meta["grid"], ch=meta["ch"], n_embed=meta["n_embed"])
    dev = pick_device(cfg)
    model.to(dev)
    trainer = HeadTask(model, lambda m, b: m.loss(b), lr=s.lr, fast_path=s.fast_path,
                       cpu_bf16=s.cpu_bf16)
    state = train_loop(trainer,
                       shuffled_batches(len(maps), s.batch_size, seed, lambda idx, _: maps.batch(idx).to(dev)),
                       out_dir=out,
                       max_steps=s.steps, seed=seed, config_hash=h, ckpt_every=s.ckpt_every,
                       log_every=max(1, min(10, s.steps)), desc=f"label-map VQ {dataset}")
    model.eval()
    first = maps.batch(range(min(256, len(maps))))
    acc = float((model.reconstruct(first.to(dev)).cpu() == first).float().mean())
    atomic_torch_save(out / "model.pt", {"state": model.state_dict(), "meta": meta})
    atomic_write_json(out / "meta.json", {**meta, "train_pixel_accuracy": acc})
    record.write(out, train_pixel_accuracy=acc, execution=trainer.execution.record(), training=state.record())
    return out / "model.pt"


def _tokenizer_grid(cfg: dict[str, Any], dataset: str) -> int:
    """The one code grid of the tokenizers semantic synthesis runs on (they share one label-map VQ)."""
    grids = jobs.tokenizer_grid(cfg, dataset)
    if len(grids) != 1:
        raise ArtifactError(f"tokenizers of dataset {dataset} have different code grids {grids}; "
                            "semantic synthesis needs one label-map VQ grid")
    return grids[0]


def load_labelmap_vq(cfg: dict[str, Any], dataset: str):
    from lgvq.stage2.labelmap_vq import DEFAULT_CH, LabelMapVQ

    path = paths.labelmap_vq_model(cfg["results_dir"], dataset)
    if not path.is_file():
        raise ArtifactError(f"label-map VQ not found: {path} (rule labelmap_vq / `lgvq stage2 labelmap-vq`)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is reported by name
        raise ArtifactError(f"corrupt label-map VQ {path}: {e}") from e
    meta = payload["meta"]
    # "ch" is absent from a model.pt written before stage2.labelmap_ch: those were DEFAULT_CH wide
    model = LabelMapVQ(meta["n_classes"], meta["image_size"], meta["grid"], ch=meta.get("ch", DEFAULT_CH),
                       n_embed=meta["n_embed"])
    model.load_state_dict(payload["state"])
    return model.eval(), meta


def run(cfg: dict[str, Any], task: str, dataset: str, tokenizer: str, variant: str, seed: int) -> Path:
    spec = STAGE2_TASKS.get(task, key="--task")
    from lgvq.downstream.task import HeadTask
    from lgvq.metrics.image import to_uint8
    from lgvq.pipeline.artifacts import fid_extractor, png_folder, reference_folder, score_fid, text_cache, write_pngs
    from lgvq.pipeline.tokenizer import load_tokenizer
    from lgvq.pipeline.downstream import convergence_extra, validation
    from lgvq.train.loop import seed_everything, shuffled_batches, train_loop

    R, s, ds = cfg["results_dir"], stage2_settings(cfg), dataset_settings(cfg, dataset)
    h = config_hash(jobs.stage2_training(cfg, task, dataset, tokenizer, variant, seed))  # the checkpoint's
    work = paths.stage2_dir(R, task, dataset, tokenizer, variant, seed)
    out = paths.eval_dir(R, paths.stage2_kind(task), dataset, tokenizer, variant, seed)
    record = RunRecord(f"stage2/{task}", jobs.stage2_job(cfg, task, dataset, tokenizer, variant, seed),
                       seed=seed, training_hash=h)
    dist, dev = process_group(cfg)  # one process unless torchrun started several (stage2.gpus > 1)
    tokdir = paths.tokenizer_dir(R, dataset, tokenizer, variant, seed)
    train_codes, test_codes = CodeTable(tokdir, ("train",)), CodeTable(tokdir, ("test",))
    grid = train_codes.grid
    n_codes = int(np.load(paths.codebook_file(R, dataset, tokenizer, variant, seed), allow_pickle=False).shape[0])
    source = dataset_source(cfg, dataset)
    train_recs, test_recs = source.records("train"), source.records("test")[: ds.eval_images]
    # the validation curve: the first val_items val images' codes (val_every 0 or no val split: none)
    val_recs = source.records("val")[: s.val_items] if s.val_every and "val" in source.splits() else []

    # --- conditions -------------------------------------------------------------------------------
    size = ds.image_size
    ctx = Stage2Context(s, dataset, train_recs, test_recs, grid, n_codes, dev,
                        text_cache=lambda: text_cache(cfg, dataset), label_map_vq=lambda: load_labelmap_vq(cfg, dataset),
                        label_map=lambda record: label_map_at(record, size), val_records=val_recs)
    cond = spec.conditions(ctx)
    condition = cond.of

    seed_everything(seed)
    model = spec.build(ctx, cond).to(dev)

    dropout = s.cond_dropout if spec.supports_guidance else 0.0  # null captions: the text-to-image tasks only

    def make_batch(idx: list[int], epoch: int):
        recs = [train_recs[i] for i in idx]
        draws = [caption_draw(len(r.captions), seed, epoch, i, dropout) for r, i in zip(recs, idx)]
        cond = condition(recs, [r.captions[c] for r, (c, _) in zip(recs, draws)])
        if dropout:
            cond = spec.drop_conditions(cond, torch.as_tensor([dropped for _, dropped in draws]))
        return train_codes.batch([train_codes(r.image_id) for r in recs], dev), cond

    def val_batches(n: int):  # each val image with its first caption (a fixed condition)
        codes = CodeTable(tokdir, ("val",))
        return [(codes.batch([codes(r.image_id) for r in chunk], dev), condition(chunk, [r.captions[0] for r in chunk]))
                for chunk in (val_recs[i : i + 128] for i in range(0, len(val_recs), 128))]

    loss_terms = lambda m, b: {"ce": spec.loss(m, *b)}  # noqa: E731
    trainer = HeadTask(model, loss_terms, lr=s.lr, dist=dist, fast_path=s.fast_path,
                       cpu_bf16=s.cpu_bf16)
    state = train_loop(trainer,
                       shuffled_batches(len(train_recs), s.batch_size, seed, make_batch, dist=dist, key="stage2.batch_size"),
                       out_dir=work,
                       max_steps=s.steps, seed=seed, config_hash=h, ckpt_every=s.ckpt_every,
                       log_every=max(1, min(10, s.steps)), desc=f"stage2 {task}/{tokenizer}/{variant}/seed{seed}", dist=dist,
                       validate=validation(loss_terms, model, val_batches if val_recs else None, s.val_items),
                       val_every=s.val_every, val_max_points=s.val_max_points)
    model.eval()

    # --- generate, decode, score -------------------------------------------------------------------
    # Sampling is spread over the ranks: chunk c (50 conditions) is drawn by rank c % world with its own
    # generator seeded by c, so the samples do not depend on how many processes draw them. Rank 0
    # gathers them, then scores and writes alone.
    from lgvq.train.distributed import chunks_on_main

    tok = load_tokenizer(cfg, dataset, tokenizer, variant, seed).to(dev)
    sample_seed = eval_settings(cfg).mask_eval_seed * 7919 + seed
    captions = [r.captions[0] for r in test_recs]
    # Attribute accuracy reads the samples of every round (stage2.samples_per_caption: several draws per test
    # caption, a smaller sampling spread); the PNGs, the grid and the FID only round 0's, one sample per condition.
    scores_attributes = jobs.scores_caption_attributes(cfg, task)
    rounds = jobs.samples_per_caption(cfg, task)
    n_chunks = -(-len(test_recs) // 50)

    def draw(q: int) -> Tensor:  # q: chunk c of sampling round `round_`
        round_, c = divmod(q, n_chunks)
        i, recs = c * 50, test_recs[c * 50 : c * 50 + 50]
        g = torch.Generator(device=dev).manual_seed(sample_draw_seed(sample_seed, c, round_))
        real = test_codes.batch([test_codes(r.image_id) for r in recs], dev)
        given = spec.given(real)
        with torch.no_grad():
            codes = spec.generate(model, len(recs), condition(recs, captions[i : i + 50]), given, g, dev, s)
        if given is not None and not torch.equal(codes.flatten(1)[:, : given.shape[1]], given):
            raise RuntimeError(f"{task} changed the codes it was given")
        with torch.no_grad():  # no autograd graph: a sample must not keep the decoder's activations alive
            return tok.decode_codes(codes).clamp(-1, 1).cpu()

    chunks = chunks_on_main(n_chunks * rounds, draw, dist)  # lazy: draws as it is iterated
    if not dist.is_main:
        for _ in chunks:  # this rank's share of the samples; rank 0 scores and writes
            pass
        return out / paths.METRICS_NAME
    extractor = fid_extractor(cfg, dataset)  # before sampling: a missing extractor fails before any sample
    tag = spec.metric_tag
    if scores_attributes:
        from lgvq.data.attributes import CAPTION_SCORED, caption_attribute_vector
        from lgvq.metrics.attributes import CaptionFollowing, mismatched

        attr_mask = torch.as_tensor(CAPTION_SCORED)
        wanted = torch.as_tensor(np.stack([caption_attribute_vector(cap) for cap in captions]))
        wanted_mismatched, following = torch.stack(mismatched(wanted)), CaptionFollowing()
    # Rank 0 writes and scores the samples 50 at a time as they arrive (only a round of chunks is held);
    # the folder replaces an earlier one once all are written, and the FID reads them back from disk.
    samples_dir, grid_images = out / "samples", []
    with png_folder(samples_dir) as tmp_dir:
        for q, x in chunks:
            round_, c = divmod(q, n_chunks)
            recs = test_recs[c * 50 : c * 50 + 50]
            if round_ == 0:
                write_pngs(to_uint8(x), [f"{rec.image_id:012d}" for rec in recs], tmp_dir)
                room = 16 - sum(len(t) for t in grid_images)
                if room > 0:  # a copy: a view would keep the whole chunk alive
                    grid_images.append(x[:room].clone())
            if scores_attributes:
                rows = slice(c * 50, c * 50 + len(recs))
                following.add(extractor, x, wanted[rows], wanted_mismatched[rows], attr_mask)
    _sample_grid(torch.cat(grid_images), paths.stage2_sample_grid(R, task, dataset, tokenizer, variant, seed))

    # FID off: the samples and their grid are still written above, for a person to look at
    fid = score_fid(samples_dir, reference_folder(cfg, dataset) if extractor is not None else None, extractor,
                    paths.dataset_dir(R, dataset) / "eval" / "fid_cache", tag=tag,
                    note_suffix=f"; one sample per test condition, seed {seed}")
    metrics, notes = fid.metrics, fid.notes
    if scores_attributes:
        for name, value in following.metrics().items():
            metrics[f"{name}[{tag}]" if tag else name] = value
        notes.update(attribute_notes(len(captions), tag, samples_per_caption=rounds))
    MetricRecord(
        spec.table_id, dataset, tokenizer, variant, seed, metrics, notes,
        labels={"generator": spec.describe(model, s), "text_encoder": cond.text_encoder},
        not_computed=fid.not_computed, extra={"task": task, **convergence_extra(work)}).write(out)
    record.write(out, fid=fid.description, work_dir=str(work), processes=dist.world,
                 execution=trainer.execution.record(), training=state.record())
    return out / paths.METRICS_NAME


def caption_draw(n_captions: int, seed: int, epoch: int, item: int, cond_dropout: float = 0.0) -> tuple[int, bool]:
    """(which caption, whether it is replaced by the null caption) of training item `item` in `epoch`: a pure
    function of its arguments, so a resumed run draws the same; the caption is the same whatever
    `cond_dropout` (the null draw comes after it, from the same generator)."""
    rng = random.Random(seed * 1_000_003 + epoch * 10_007 + item)
    caption = rng.randrange(n_captions)
    return caption, bool(cond_dropout) and rng.random() < cond_dropout


def sample_draw_seed(sample_seed: int, chunk: int, round_: int) -> int:
    """The generator seed of one chunk of 50 test conditions in sampling round `round_`: round 0's is the
    one-sample-per-caption seed of before (its samples, PNGs and FID unchanged by stage2.samples_per_caption);
    each later round draws again from another seed."""
    return sample_seed * 100_003 + chunk + round_ * 1_000_000_007


def attribute_notes(n_captions: int, tag: str | None = None, what: str = "sample",
                    samples_per_caption: int = 1) -> dict[str, str]:
    """The notes of attribute_accuracy and caption_following, under their (tagged) keys."""
    key = lambda name: f"{name}[{tag}]" if tag else name  # noqa: E731
    counted = f"{n_captions} captions" + (f" x {samples_per_caption} samples each" if samples_per_caption > 1 else "")
    return {key("attribute_accuracy"): f"shapes-cnn reads each {what}; shape and colour slots compared with those its "
                                       f"caption names (count not scored); {counted}",
            key("caption_following"): f"attribute accuracy against each {what}'s own caption minus against the next "
                                      f"condition's (cyclically): 0 for images that ignore their caption; "
                                      f"{counted}"}


def _sample_grid(x: Tensor, path: Path) -> None:
    from lgvq.imagegrid import save_png_grid

    with atomic_path(path) as tmp:
        save_png_grid(x * 0.5 + 0.5, tmp, nrow=8)
