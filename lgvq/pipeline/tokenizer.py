"""`lgvq tokenizer train|encode`: the first stage of the DAG.

`model.pt` holds the trained tokenizer (and LG module) weights plus what is needed to rebuild
them (registry name, params, config hash); every later stage loads tokenizers through
`load_tokenizer`, never by re-reading training code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from lgvq.arrays import NpyRowWriter
from lgvq.config import ConfigError, learning_rate, lg_weights_for, tokenizer_job_slice, tokenizer_needs_text
from lgvq.io import ArtifactError, atomic_path, atomic_torch_save, load_torch_file
from lgvq.manifest import RunRecord, config_hash
from lgvq.pipeline import paths
from lgvq.pipeline.artifacts import frozen_text_encoder, text_cache
from lgvq.pipeline.common import dataset_source, device as pick_device, image_source, process_group
from lgvq.settings import (DatasetSettings, data_settings, dataset_settings, lg_settings, text_encoder_settings,
                           thawed, tokenizer_settings, train_settings)


VOCAB_ROWS = 65536  # captions per chunk when counting the vocabulary


def vocabulary_embeddings(cache) -> Callable[[int], torch.Tensor]:
    """What a tokenizer declaring `Needs(word_embeddings=True)` receives (VQCT's codebook is
    transferred from pretrained word embeddings of a vocabulary): given `n_words`, n rows.

    Vocabulary (documented simplification of VQCT's adjective/noun list): the whole-word,
    alphabetic tokens of the text encoder's vocabulary that occur in the dataset's captions,
    most frequent first, topped up with the encoder's other whole-word tokens in vocabulary
    order until `n_words` rows exist. Rows are the frozen token embeddings.
    """

    def provide(n_words: int) -> torch.Tensor:
        emb = torch.as_tensor(np.asarray(cache.token_embeddings, dtype=np.float32))
        counts = np.zeros(emb.shape[0], dtype=np.int64)
        for i in range(0, len(cache.token_ids), VOCAB_ROWS):  # the cache's token ids a chunk at a time, never all of them
            ids = np.asarray(cache.token_ids[i : i + VOCAB_ROWS]).reshape(-1)
            valid = np.asarray(cache.valid[i : i + VOCAB_ROWS]).reshape(-1) & ~np.asarray(cache.special[i : i + VOCAB_ROWS]).reshape(-1)
            counts += np.bincount(ids[valid], minlength=emb.shape[0])
        order = [i for i in np.argsort(-counts, kind="stable") if counts[i] > 0]
        chosen = list(dict.fromkeys(order))[:n_words]
        if len(chosen) < n_words:
            extra = [i for i in range(emb.shape[0]) if counts[i] == 0]
            rng = np.random.default_rng(0)
            chosen += list(rng.choice(extra, size=n_words - len(chosen), replace=False))
        return emb[torch.as_tensor(chosen)]

    return provide


def build_models(cfg: dict[str, Any], dataset: str, tokenizer: str, variant: str, cache=None):
    """Instantiate the tokenizer (registered name or import path) with the inputs its class's
    `needs` declares and, for LG variants, the LG module."""
    from lgvq.tokenizers.registry import build_tokenizer, tokenizer_needs

    entry = tokenizer_settings(cfg, tokenizer)
    image_size = dataset_settings(cfg, dataset).image_size
    needs = tokenizer_needs(entry.class_, f"tokenizers.{tokenizer}.class")
    if needs.frozen_checkpoint and not entry.checkpoint:
        raise ConfigError(f"tokenizers.{tokenizer}.checkpoint: required: class '{entry.class_}' declares "
                          "Needs(frozen_checkpoint=True) (it is evaluated frozen, never trained here)")
    if needs.reads_text:
        cache = cache or text_cache(cfg, dataset)
    model = build_tokenizer(entry.class_, thawed(entry.params), image_size=image_size, key=f"tokenizers.{tokenizer}",
                            word_embeddings=vocabulary_embeddings(cache) if needs.word_embeddings else None,
                            text_cache=cache if needs.text_cache else None)
    weights = lg_weights_for(cfg, dataset, variant)
    lg = None
    if any(w > 0 for w in weights.values()):
        from lgvq.lg.module import LanguageGuidance

        cache = cache or text_cache(cfg, dataset)
        size = lg_settings(cfg)
        lg = LanguageGuidance(
            code_dim=model.embed_dim,
            text_width=cache.width,
            grid_tokens=(image_size // model.downsample) ** 2,
            token_embeddings=torch.as_tensor(np.asarray(cache.token_embeddings, dtype=np.float32)),
            gsa=weights["gsa"], mtp=weights["mtp"], ras=weights["ras"],
            layers=size.layers, heads=size.heads, dropout=size.dropout,
            max_len=text_encoder_settings(cfg).max_length,
        )
    return model, lg, weights


def leak_free_reencoder(cfg: dict[str, Any], lg, device, cache):
    """`lg.mtp_input: leak_free`: L_mtp's decoder reads the caption re-encoded by the frozen text encoder
    with its masked words replaced by the mask token (lgvq.lg.module.reencode_masked); None otherwise.
    The encoder must be the one that built `cache` (its token ids, targets and token embeddings)."""
    if lg is None or lg.weights["mtp"] == 0 or lg_settings(cfg).mtp_input != "leak_free":
        return None
    from lgvq.lg.module import reencode_masked

    encoder = frozen_text_encoder(cfg, device)
    if (str(encoder.model_id), encoder.width) != (cache.model_id, cache.width):
        raise ArtifactError(f"lg.mtp_input: leak_free re-encodes captions with text_encoder '{encoder.name}' "
                            f"({encoder.model_id}, width {encoder.width}), but the text cache {cache.path} was built "
                            f"by {cache.model_id} (width {cache.width}); rebuild the cache with `lgvq text cache`")
    return lambda captions, masked: reencode_masked(captions, masked, encoder)


class TextBatcher:
    """Attaches the cached text features of each item's caption to a batch the loader's workers
    collated (lgvq.data.loader.collate_images): it runs in the training process, so the workers
    never receive the text cache. Calling it on a list of items collates them first."""

    def __init__(self, cache) -> None:
        self.cache = cache

    def attach(self, batch: dict[str, Any]) -> dict[str, Any]:
        if self.cache is not None:
            rows = [self.cache.row(i, c) for i, c in zip(batch["image_id"], batch["caption"])]
            batch["text"] = self.cache.features(rows)
        return batch

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        from lgvq.data.loader import collate_images

        return self.attach(collate_images(items))


def train(cfg: dict[str, Any], dataset: str, tokenizer: str, variant: str, seed: int) -> Path:
    from lgvq.data.dataset import ImageTextDataset
    from lgvq.data.loader import epoch_batch_indices, image_batches, loader_settings
    from lgvq.train.loop import epoch_order, seed_everything, train_loop
    from lgvq.train.tokenizer_task import TokenizerTask

    dist, dev = process_group(cfg)  # one process unless launched by torchrun (train.gpus > 1)
    job = tokenizer_job_slice(cfg, dataset, tokenizer, variant, seed)
    h = config_hash(job)
    R, entry, ds, t = cfg["results_dir"], tokenizer_settings(cfg, tokenizer), dataset_settings(cfg, dataset), train_settings(cfg)
    out = paths.tokenizer_dir(R, dataset, tokenizer, variant, seed)
    record = RunRecord("tokenizer/train", job, seed=seed, config_hash_short=h)
    if entry.checkpoint:
        if entry.init_from:
            raise ArtifactError(f"tokenizers.{tokenizer}: checkpoint (evaluate frozen) and init_from (fine-tune) "
                                "exclude each other; keep one, or make two entries")
        return _adopt_frozen(cfg, dataset, entry, variant, seed, h, out, record)
    seed_everything(seed)
    cache = text_cache(cfg, dataset) if tokenizer_needs_text(cfg, dataset, tokenizer, variant) else None
    model, lg, weights = build_models(cfg, dataset, tokenizer, variant, cache)
    init = _init_from(entry, model)
    source = image_source(cfg, dataset)
    train_set = ImageTextDataset(source.records("train"), image_size=ds.image_size, train=True,
                                 resize_mode=ds.resize_mode, seed=seed, jpeg_draft=ds.jpeg_draft)
    lr = learning_rate(cfg, n_gpus=dist.world)
    task = TokenizerTask(model, lg, lr=lr, betas=tuple(t.betas), micro_batch=t.micro_batch, device=dev,
                         dist=dist, fast_path=t.fast_path, compile=t.compile, cpu_bf16=t.cpu_bf16,
                         reencode=leak_free_reencoder(cfg, lg, dev, cache))
    collate = TextBatcher(cache if lg is not None else None)
    # train.batch_size is per process, as in the authors' lr rule: the global batch has world x bs
    # images and each rank trains on its share.
    bs = t.batch_size * dist.world

    feed = loader_settings(data_settings(cfg), dev)

    def epoch_batches(epoch: int, start: int = 0):
        # The ragged last batch is dropped (fixed batch size); each rank decodes only its share, and a
        # resumed epoch starts at batch `start` without decoding the ones before it.
        train_set.set_epoch(epoch)
        mine = epoch_batch_indices(len(train_set), bs, epoch_order(len(train_set), seed, epoch), rank=dist.rank,
                                   world=dist.world, start=start)
        return image_batches(train_set, mine, finish=collate.attach, seed=seed * 1_000_003 + epoch, **feed)

    steps = entry.steps or t.steps
    originals = dataset_source(cfg, dataset)  # the val grids show the original images (not a resized copy)
    validate = _reconstruction_validation(source, ds, t.val_items, model, dev) if t.val_every else None
    state = train_loop(task, epoch_batches, out_dir=out, max_steps=steps, seed=seed, config_hash=h,
                       ckpt_every=t.ckpt_every, log_every=t.log_every,
                       desc=f"{tokenizer}/{variant}/seed{seed}", dist=dist, validate=validate, val_every=t.val_every,
                       val_max_points=t.val_max_points,
                       on_checkpoint=lambda step: _save_val_grid(originals, ds, model, paths.val_step_grid_file(out, step), dev))
    if not dist.is_main:
        return out / "model.pt"  # rank 0 writes the outputs
    _save_val_grid(originals, ds, model, paths.val_grid_file(R, dataset, tokenizer, variant, seed), dev)
    model_path = out / "model.pt"
    atomic_torch_save(model_path, {"config_hash": h, "class": entry.class_,
                                   "tokenizer": model.state_dict(), "lg": lg.state_dict() if lg is not None else None,
                                   "lg_weights": weights, "steps": state.step})
    record.write(out, tokenizer_description=model.describe(), lg_weights=weights, init_from=init,
                 text_encoder=cache.describe() if cache is not None else None, steps=state.step, lr=lr, processes=dist.world,
                 training=state.record(),
                 execution={**task.execution.record(), "fast_path": t.fast_path,
                            "cpu_bf16": t.cpu_bf16, "device": str(dev)})
    return model_path


def _adopt_frozen(cfg, dataset, entry, variant, seed, h, out: Path, record: RunRecord) -> Path:
    """A frozen external checkpoint is evaluated without training: it is validated against the
    registered class (strict state-dict load) and recorded as this run's model.pt."""
    if variant != "base":
        raise ArtifactError(f"tokenizers.{entry.key}.checkpoint: a frozen checkpoint has no +LG training; "
                            f"set tokenizers.{entry.key}.variants: [base]")
    model = load_tokenizer(cfg, dataset, entry.key, variant, seed)
    src = entry.checkpoint
    source = _checkpoint_identity(src)
    atomic_torch_save(out / "model.pt", {"config_hash": h, "class": entry.class_,
                                         "tokenizer": model.state_dict(), "lg": None, "lg_weights": {}, "steps": 0,
                                         "frozen_from": str(src), "frozen_sha256": source["sha256"]})
    record.write(out, tokenizer_description=model.describe(), frozen_checkpoint=source, steps=0)
    return out / "model.pt"


def load_tokenizer(cfg: dict[str, Any], dataset: str, tokenizer: str, variant: str, seed: int,
                   *, with_lg: bool = False):
    """Rebuild a trained tokenizer (and LG module) from its model.pt, refusing a stale config."""
    entry = tokenizer_settings(cfg, tokenizer)
    run_path = paths.tokenizer_model(cfg["results_dir"], dataset, tokenizer, variant, seed)
    external = bool(entry.checkpoint) and not run_path.is_file()
    path = Path(entry.checkpoint) if external else run_path
    if not path.is_file():
        # Name the config key when the path came from the config (a frozen external checkpoint).
        where = f"tokenizers.{tokenizer}.checkpoint: " if external else ""
        raise ArtifactError(f"{where}trained tokenizer not found: {path}")
    payload = load_torch_file(path, key=f"tokenizers.{tokenizer}.checkpoint" if external else None)
    expected = config_hash(tokenizer_job_slice(cfg, dataset, tokenizer, variant, seed))
    if not external and payload.get("config_hash") != expected:
        raise ArtifactError(f"{path} was trained with another config (hash {payload.get('config_hash')} != {expected}); "
                            "re-run training")
    model, lg, _ = build_models(cfg, dataset, tokenizer, variant)
    state = _external_state(model, payload, path) if external else payload["tokenizer"]
    model.load_state_dict(state)
    model.eval()
    if lg is not None and payload.get("lg") is not None:
        lg.load_state_dict(payload["lg"])
        lg.eval()
    return (model, lg) if with_lg else model


def _external_state(model, payload, path: Path) -> dict:
    """A checkpoint from outside the DAG as this model's state dict: a published tokenizer's own
    format through its adapter's `convert_checkpoint`, else our state dict (bare or in model.pt)."""
    if hasattr(model, "convert_checkpoint"):
        return model.convert_checkpoint(payload, str(path))
    return payload["tokenizer"] if isinstance(payload, dict) and "tokenizer" in payload else payload


def _checkpoint_identity(path) -> dict[str, str]:
    from lgvq.tokenizers.pretrained.common import file_sha256

    return {"path": str(path), "file": Path(path).name, "sha256": file_sha256(path)}


def _init_from(entry, model) -> dict[str, str] | None:
    """Start training from `tokenizers.<t>.init_from` (fine-tuning a published or earlier
    tokenizer); a class that only makes sense with pretrained weights refuses to start without."""
    tokenizer, src = entry.key, entry.init_from
    if not src:
        if type(model).needs.pretrained_weights:
            raise ArtifactError(f"tokenizers.{tokenizer}: class '{entry.class_}' adapts a published tokenizer and "
                                f"has no meaning with random weights; set tokenizers.{tokenizer}.checkpoint (frozen) "
                                f"or tokenizers.{tokenizer}.init_from (fine-tune)")
        return None
    key = f"tokenizers.{tokenizer}.init_from"
    payload = load_torch_file(src, key=key)
    state = _external_state(model, payload, Path(src))  # an adapter's own check names the mismatch
    try:
        model.load_state_dict(state)
    except RuntimeError as e:  # a state dict of another class or params: torch's message, first line
        raise ArtifactError(f"{key}: {src} does not fit class '{entry.class_}' with these params "
                            f"({str(e).splitlines()[0][:300]})") from e
    return _checkpoint_identity(src)


def _reconstruction_validation(source, ds: DatasetSettings, val_items: int, model, dev):
    """The tokenizer's validation curve: L1 reconstruction error (pixels in [-1, 1]) over the first
    `val_items` val images of `source` (the training images' source), in eval mode; images decoded
    once, on first use."""
    from lgvq.data.dataset import ImageTextDataset

    if "val" not in source.splits():
        return None
    images: list[torch.Tensor] = []

    def validate() -> dict[str, float]:
        if not images:
            val = ImageTextDataset(source.records("val")[:val_items], image_size=ds.image_size, train=False,
                                   resize_mode=ds.resize_mode, seed=0, jpeg_draft=ds.jpeg_draft)
            images.extend(torch.stack([val[j]["image"] for j in range(i, min(i + 64, len(val)))])
                          for i in range(0, len(val), 64))
        err = [(model(x.to(dev)).x_rec.float() - x.to(dev)).abs().mean().item() * len(x) for x in images]
        return {"rec_l1": sum(err) / max(1, sum(len(x) for x in images))}

    return validate


@torch.no_grad()
def _save_val_grid(source, ds: DatasetSettings, model, path: Path, dev, n: int = 8) -> None:
    """Originals (top row) above reconstructions (bottom row) of the first val images of `source`."""
    from lgvq.data.dataset import ImageTextDataset
    from lgvq.imagegrid import save_png_grid

    val = ImageTextDataset(source.records("val")[:n], image_size=ds.image_size, train=False,
                           resize_mode=ds.resize_mode, seed=0)
    x = torch.stack([val[i]["image"] for i in range(len(val))]).to(dev)
    was_training = model.training
    model.eval()
    rec = model(x).x_rec.clamp(-1, 1)
    model.train(was_training)
    with atomic_path(path) as tmp:
        save_png_grid(torch.cat([x, rec]).cpu() * 0.5 + 0.5, tmp, nrow=len(x))


@torch.no_grad()
def encode(cfg: dict[str, Any], dataset: str, tokenizer: str, variant: str, seed: int, batch_size: int = 64) -> None:
    """Encode every split into code grids (codes/<split>.npy, with image_ids) + the codebook."""
    from lgvq.data.dataset import ImageTextDataset
    from lgvq.data.loader import loader_settings, sequential_batches

    out = paths.tokenizer_dir(cfg["results_dir"], dataset, tokenizer, variant, seed) / "codes"
    dev = pick_device(cfg)
    model = load_tokenizer(cfg, dataset, tokenizer, variant, seed).to(dev)
    ds = dataset_settings(cfg, dataset)
    source = image_source(cfg, dataset)
    record = RunRecord("tokenizer/encode", tokenizer_job_slice(cfg, dataset, tokenizer, variant, seed), seed=seed)
    for split in ("train", "val", "test"):
        data = ImageTextDataset(source.records(split), image_size=ds.image_size, train=False,
                                resize_mode=ds.resize_mode, seed=0, jpeg_draft=ds.jpeg_draft)
        ids = []
        with atomic_path(out / f"{split}.npy") as tmp:  # written a batch at a time: the split's codes are never held
            writer = None
            try:
                for batch in sequential_batches(data, batch_size, **loader_settings(data_settings(cfg), dev)):
                    x = batch["image"].to(dev, non_blocking=True)
                    codes = model.encode_codes(x).cpu().numpy()
                    if writer is None:  # the grid is known once the first batch is encoded
                        writer = NpyRowWriter(tmp, np.int32, (len(data), *codes.shape[1:]))
                    writer.append(codes)
                    ids.extend(batch["image_id"])
            except BaseException:
                if writer is not None:
                    writer.fh.close()  # a failed batch: the half file goes with the temporary
                raise
            if writer is None:
                raise ArtifactError(f"split {split} of dataset {dataset} has no images to encode")
            writer.close()
        with atomic_path(out / f"{split}_image_ids.npy") as tmp:
            np.save(tmp, np.asarray(ids, dtype=np.int64))
    with atomic_path(out / "codebook.npy") as tmp:
        np.save(tmp, model.codebook().detach().cpu().numpy().astype(np.float32))
    record.write(out)
