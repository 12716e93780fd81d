"""Every evaluation streams its split in batches (issue 20, item 3) and gives what the one-shot
computation it replaced gave. Each test keeps that old computation as a small reference and runs
the streaming one with batch sizes that force several batches / blocks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lgvq.data.dataset import ImageTextDataset
from lgvq.data.sources.shapes import ShapesSource
from lgvq.data.synth import generate
from lgvq.lg import evaluate as lg_eval
from lgvq.text.base import TextEncoder, TextFeatures
from lgvq.text.cache import TextCache, build_text_cache

TINY = {"ch": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "z_channels": 8,
        "embed_dim": 8, "n_embed": 16}


class StandIn(TextEncoder):
    """A deterministic encoder without weights; its per-token features mix in the caption's
    running mean, so re-encoding a masked caption changes them (the leak-free protocol)."""

    name, model_id, width, max_length, vocab_size, pad_id, mask_id = "minilm", "stand-in", 16, 30, 50, 0, 49

    def __init__(self) -> None:
        self.table = torch.randn(self.vocab_size, self.width, generator=torch.Generator().manual_seed(0))

    def encode_ids(self, ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        t = self.table[ids] * valid[..., None]
        return t + t.cumsum(1) / torch.arange(1, ids.shape[1] + 1)[None, :, None]

    def encode(self, captions: list[str]) -> TextFeatures:
        ids = torch.zeros(len(captions), self.max_length, dtype=torch.long)
        valid = torch.zeros_like(ids, dtype=torch.bool)
        special = torch.zeros_like(valid)
        for i, cap in enumerate(captions):
            toks = [1] + [2 + sum(map(ord, w)) % 46 for w in cap.split()][: self.max_length - 2] + [1]
            ids[i, : len(toks)] = torch.tensor(toks)
            valid[i, : len(toks)] = True
            special[i, [0, len(toks) - 1]] = True
        tokens = self.encode_ids(ids, valid)
        return TextFeatures(ids, tokens, valid, special, F.normalize(tokens.mean(1), dim=-1))

    def token_embedding_matrix(self) -> torch.Tensor:
        return self.table


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """The embedded data (80 images at 16 px), its text cache, an untrained tokenizer and LG module."""
    from lgvq.lg.module import LanguageGuidance
    from lgvq.tokenizers.registry import build_tokenizer

    root = generate(tmp_path_factory.mktemp("shapes") / "data", n=80, size=16, seed=0)
    source = ShapesSource(root)
    splits = {s: (ImageTextDataset(source.records(s), image_size=16, train=False, resize_mode="resize", seed=0),
                  source.records(s)) for s in ("train", "test")}
    enc = StandIn()
    caps = {r.image_id: list(r.captions) for s in source.splits() for r in source.records(s)}
    cache = TextCache.load(build_text_cache(caps, enc, root.parent / "minilm.npz", batch_size=32))
    torch.manual_seed(0)
    model = build_tokenizer("vqvae", dict(TINY), image_size=16, word_embeddings=None, key="tokenizers.vqvae").eval()
    lg = LanguageGuidance(code_dim=8, text_width=enc.width, grid_tokens=64, token_embeddings=enc.table,
                          gsa=1.0, mtp=1.0, ras=1.0, layers=1, heads=1, dropout=0.0, max_len=30).eval()
    return model, lg, cache, enc, splits


# --- the one-shot text-alignment evaluation this harness ran before streaming (reference) -------

def _old_fit_ridge(x, y, lam=lg_eval.RIDGE):
    xb = torch.cat([x, torch.ones(len(x), 1)], 1).double()
    a = xb.t() @ xb + lam * torch.eye(xb.shape[1], dtype=torch.float64)
    return torch.linalg.solve(a, xb.t() @ y.double()).float()


def _old_word_code_mse(z_q, text, w_map):
    codes = z_q.flatten(2).transpose(1, 2)
    mapped = torch.cat([codes, torch.ones(*codes.shape[:2], 1)], -1) @ w_map
    real = text.valid & ~text.special
    words = F.normalize(text.tokens, dim=-1)
    pos = (words @ F.normalize(mapped, dim=-1).transpose(1, 2)).argmax(-1)
    aligned = F.normalize(torch.gather(codes, 1, pos[..., None].expand(-1, -1, codes.shape[-1])), dim=-1)
    pair = real[:, :, None] & real[:, None, :] & ~torch.eye(real.shape[1], dtype=torch.bool)[None]
    return float(((aligned @ aligned.transpose(1, 2) - words @ words.transpose(1, 2))[pair] ** 2).mean())


def _old_retrieval(cls, text_global):
    sim = F.normalize(cls, dim=-1) @ F.normalize(text_global, dim=-1).t()
    rank = (sim > sim.diagonal()[:, None]).sum(1)
    return {"I2T-R@1": float((rank < 1).float().mean()), "I2T-R@5": float((rank < 5).float().mean())}


def _old_recall(lg, z_q, text, k, seed, encoder=None):
    masked, _ = lg_eval.masked_positions(text, k, seed)  # one draw over the whole split
    keep = masked.any(1)
    t, m = text[keep], masked[keep]
    if encoder is not None:
        t = lg_eval.reencode_masked(t, m, encoder)
    pred = lg.predict_masked(z_q[keep], t, m).argmax(-1)
    return float((pred[m] == t.token_ids[m]).float().mean())


@torch.no_grad()
def _old_alignment(model, lg, cache, splits, seed, encoder):
    (tr_data, tr_recs), (te_data, te_recs) = splits["train"], splits["test"]
    z_tr = model(torch.stack([tr_data[i]["image"] for i in range(len(tr_data))])).z_q
    z_te = model(torch.stack([te_data[i]["image"] for i in range(len(te_data))])).z_q
    t_tr = cache.features([cache.row(r.image_id, r.captions[0]) for r in tr_recs])
    t_te = cache.features([cache.row(r.image_id, r.captions[0]) for r in te_recs])
    out = {"word_code_MSE": _old_word_code_mse(z_te, t_te, _old_fit_ridge(z_tr.mean((2, 3)), t_tr.global_))}
    for k in (1, 3):
        out[f"Recall@1[Mask-{k}]"] = _old_recall(lg, z_te, t_te, k, seed)
        out[f"Recall@1[Mask-{k}, leak-free]"] = _old_recall(lg, z_te, t_te, k, seed, encoder)
    return {**out, **_old_retrieval(lg.cls_embedding(z_te), t_te.global_)}


class HalfOracle(torch.nn.Module):
    """Predicts a masked word right when its position is even or its feature's first entry is
    positive (re-encoding changes that), so recall depends on which positions were drawn; the
    [CLS] embedding is the real LG module's."""

    def __init__(self, lg) -> None:
        super().__init__()
        self.lg, self.weights = lg, lg.weights

    def cls_embedding(self, z_q):
        return self.lg.cls_embedding(z_q)

    def predict_masked(self, z_q, text, masked):
        right = (torch.arange(text.token_ids.shape[1])[None] % 2 == 0) | (text.tokens[..., 0] > 0.5)
        return F.one_hot(torch.where(right, text.token_ids, 0), self.lg.mlm_bias.shape[0]).float()

    def masked_top1(self, z_q, text, masked):
        return self.predict_masked(z_q, text, masked).argmax(-1)[masked]


def test_streamed_text_alignment_equals_the_one_shot_evaluation(embedded):
    model, lg, cache, enc, splits = embedded
    lg = HalfOracle(lg)
    assert len(splits["train"][1]) > 2 * 7 and len(splits["test"][1]) > 7  # several batches of 7 per split
    want = _old_alignment(model, lg, cache, splits, seed=3, encoder=enc)
    got, _ = lg_eval.evaluate_alignment(model, lg, cache, train=splits["train"], test=splits["test"], seed=3,
                                            device=torch.device("cpu"), encoder=enc, batch=7)
    assert list(got) == ["word_code_MSE", "Recall@1[Mask-1]", "Recall@1[Mask-1, leak-free]", "Recall@1[Mask-3]",
                         "Recall@1[Mask-3, leak-free]", "I2T-R@1", "I2T-R@5"]
    assert got["word_code_MSE"] == pytest.approx(want["word_code_MSE"], rel=1e-5)  # float64 sum vs float32 mean
    for key in got:  # counts: the old float32 means differ from the exact fractions in the 8th digit only
        assert got[key] == pytest.approx(want[key], rel=1e-6), key
    assert 0 < got["Recall@1[Mask-1]"] < 1 and got["Recall@1[Mask-3]"] != got["Recall@1[Mask-3, leak-free]"]


def test_recall_notes_say_when_the_decoder_trained_on_leak_free_inputs(embedded):
    model, lg, cache, enc, splits = embedded
    kw = dict(train=splits["train"], test=splits["test"], seed=3, device=torch.device("cpu"), encoder=enc)
    _, paper = lg_eval.evaluate_alignment(model, HalfOracle(lg), cache, **kw)
    _, leak_free = lg_eval.evaluate_alignment(model, HalfOracle(lg), cache, mtp_input="leak_free", **kw)
    recalls = [key for key in paper if key.startswith("Recall@1")]
    assert len(recalls) == 4 and not any("lg.mtp_input" in paper[key] for key in recalls)
    assert all(leak_free[key].endswith("; the decoder trained on leak_free inputs (lg.mtp_input)") for key in recalls)


def test_ridge_statistics_summed_over_batches_give_the_one_shot_fit():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 6, generator=g), torch.randn(50, 4, generator=g)
    stats = lg_eval.RidgeStats()
    for i in range(0, 50, 8):
        stats.add(x[i : i + 8], y[i : i + 8])
    assert torch.allclose(stats.solve(), _old_fit_ridge(x, y), atol=1e-6)


def test_retrieval_in_blocks_of_queries_equals_the_full_similarity_matrix():
    g = torch.Generator().manual_seed(1)
    text = torch.randn(23, 5, generator=g)
    cls = text + 1.5 * torch.randn(23, 5, generator=g)  # some images retrieve their caption, some do not
    want = _old_retrieval(cls, text)
    assert 0 < want["I2T-R@1"] < want["I2T-R@5"] < 1
    for block in (1, 4, 23, 100):
        assert lg_eval.retrieval(cls, text, block=block) == pytest.approx(want, rel=1e-6), block  # old: float32 mean


# --- images: reconstructions, the FID reference, samples, label maps ---------------------------

def _pngs(folder):
    import numpy as np
    from PIL import Image

    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def test_reconstructions_streamed_to_a_folder_equal_the_one_shot_computation(embedded, tmp_path):
    import numpy as np

    from lgvq.metrics.image import psnr_per_image, ssim_per_image, to_uint8
    from lgvq.pipeline.artifacts import write_pngs
    from lgvq.pipeline.evaluate import reconstruct_to_folder

    model, _, _, _, splits = embedded
    data, recs = splits["test"]
    with torch.no_grad():  # the old computation: every image and reconstruction stacked, then scored
        x = torch.stack([data[i]["image"] for i in range(len(data))])
        real, rec = to_uint8(x), to_uint8(model(x).x_rec.clamp(-1, 1))
    write_pngs(rec, [f"{r.image_id:012d}" for r in recs], tmp_path / "old")
    folder = tmp_path / "eval" / "reconstructions"
    folder.mkdir(parents=True)
    (folder / "000000999999.png").write_bytes(b"a stale image of an earlier run")
    psnr, ssim = reconstruct_to_folder(model, data, recs, folder, torch.device("cpu"), batch=3)
    np.testing.assert_array_equal(psnr, psnr_per_image(real, rec))
    np.testing.assert_array_equal(ssim, ssim_per_image(real, rec))
    got, want = _pngs(folder), _pngs(tmp_path / "old")
    assert list(got) == list(want) and all(np.array_equal(got[k], want[k]) for k in want)
    assert sorted(p.name for p in folder.parent.iterdir()) == ["reconstructions"]  # no temporaries left


def test_a_failed_batch_leaves_the_previous_image_folder_untouched(tmp_path):
    from lgvq.pipeline.artifacts import png_folder

    folder = tmp_path / "samples"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"earlier run")
    with pytest.raises(RuntimeError, match="diverged"), png_folder(folder) as tmp:
        (tmp / "b.png").write_bytes(b"half of this run")
        raise RuntimeError("diverged")
    assert [p.name for p in tmp_path.iterdir()] == ["samples"] and [p.name for p in folder.iterdir()] == ["a.png"]


def test_reference_folder_written_in_batches_holds_the_one_shot_images(embedded, tmp_path):
    import numpy as np

    from lgvq.data.dataset import ImageTextDataset
    from lgvq.metrics.image import to_uint8
    from lgvq.pipeline import artifacts

    _, _, _, _, splits = embedded
    recs = splits["test"][1]
    from lgvq.config import load_config

    cfg = load_config(Path(__file__).resolve().parent.parent / "config" / "smoke.yaml")
    cfg["results_dir"], cfg["datasets"]["shapes"]["eval_images"] = str(tmp_path / "res"), 7
    artifacts_eval = lambda cfg, dataset, split="test", limit=None: (
        ImageTextDataset(recs[:limit], image_size=16, train=False, resize_mode="resize", seed=0), recs[:limit])
    mp = pytest.MonkeyPatch()
    mp.setattr(artifacts, "eval_images", artifacts_eval)
    try:
        folder = artifacts.reference_folder(cfg, "shapes", batch=3)
    finally:
        mp.undo()
    data = artifacts_eval(cfg, "shapes", limit=7)[0]  # the old: all 7 stacked as floats, then written
    want = to_uint8(torch.stack([data[i]["image"] for i in range(7)]))
    got = _pngs(folder)
    assert list(got) == [f"{r.image_id:012d}.png" for r in recs[:7]] and (folder / "DONE").read_text() == "7"
    assert all(np.array_equal(got[f"{r.image_id:012d}.png"], w) for r, w in zip(recs, want))


def test_attribute_hits_summed_over_batches_equal_the_one_shot_attribute_accuracy():
    from lgvq.metrics.attributes import attribute_accuracy, attribute_hits

    g = torch.Generator().manual_seed(0)
    images = torch.rand(23, 3, 8, 8, generator=g) * 2 - 1
    wanted = (torch.rand(23, 5, generator=g) > 0.5).float()
    mask = torch.tensor([True, True, False, True, True])
    w = torch.randn(3 * 8 * 8, 5, generator=g)
    classifier = lambda x: x.flatten(1) @ w
    parts = [attribute_hits(classifier, images[i : i + 5], wanted[i : i + 5], mask) for i in range(0, 23, 5)]
    right, scored = map(sum, zip(*parts))
    assert scored == 23 * 4
    want = attribute_accuracy(classifier, images, wanted, mask)["attribute_accuracy"]
    assert 0 < want < 1 and right / scored == pytest.approx(want, rel=1e-6)


def test_label_maps_are_read_per_batch_and_equal_the_stacked_split(embedded):
    import numpy as np

    from lgvq.pipeline.stage2 import LabelMaps, label_map_at

    recs = embedded[4]["train"][1]
    stacked = torch.as_tensor(np.stack([label_map_at(r, 16) for r in recs]))  # the old: every map, int64
    maps = LabelMaps(recs, 16)
    assert len(maps) == len(recs) and maps.n_classes() == int(stacked.max()) + 1 > 1
    idx = [5, 0, len(recs) - 1, 5]
    assert torch.equal(maps.batch(idx), stacked[idx]) and maps.batch(idx).dtype == torch.int64


def test_the_tokenizer_job_reads_the_cache_by_rows_as_it_read_the_arrays(embedded):
    """TextBatcher and VQCT's vocabulary read the cache's rows from disk; the same as from arrays in RAM."""
    import numpy as np

    from lgvq.arrays import RowArray
    from lgvq.pipeline.tokenizer import TextBatcher, vocabulary_embeddings

    _, _, cache, enc, splits = embedded
    with np.load(cache.path, allow_pickle=False) as z:
        in_ram = TextCache(cache.path, {k: z[k] for k in z.files})
    assert isinstance(cache.tokens, RowArray) and isinstance(in_ram.tokens, np.ndarray)
    assert torch.equal(vocabulary_embeddings(cache)(12), vocabulary_embeddings(in_ram)(12))
    recs = splits["train"][1][:5]
    items = [{"image": torch.zeros(3, 16, 16), "image_id": r.image_id, "caption": r.captions[-1], "index": i}
             for i, r in enumerate(recs)]
    got, want = TextBatcher(cache)(items)["text"], TextBatcher(in_ram)(items)["text"]
    assert torch.equal(got.tokens, want.tokens) and torch.equal(got.token_ids, want.token_ids)
    assert torch.equal(got.tokens, enc.encode([r.captions[-1] for r in recs]).tokens.half().float())
