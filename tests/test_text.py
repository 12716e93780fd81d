"""Text encoders and the feature cache."""

from __future__ import annotations

import pytest
from pathlib import Path
import torch

from lgvq.config import ConfigError
from lgvq.io import ArtifactError
from lgvq.text.cache import TextCache, build_text_cache
from lgvq.text.registry import get_text_encoder


@pytest.fixture(scope="module")
def minilm():
    return get_text_encoder("minilm", max_length=30)


def test_minilm_shapes_and_masks(minilm):
    f = minilm.encode(["a red circle", "two blue squares above a green triangle"])
    assert f.tokens.shape == (2, 30, 384) and f.global_.shape == (2, 384)
    assert f.valid.sum(1).tolist()[0] < f.valid.sum(1).tolist()[1]
    assert f.special.sum(1).tolist() == [2, 2] and not (f.special & ~f.valid).any()
    assert torch.allclose(f.global_.norm(dim=1), torch.ones(2), atol=1e-5)
    assert minilm.token_embedding_matrix().shape == (minilm.vocab_size, 384)


def test_paraphrases_are_closer_than_unrelated_captions(minilm):
    g = minilm.encode(["a red circle to the left of a blue square", "a blue box to the right of a red disc",
                       "a cat sleeping on a sofa"]).global_
    assert g[0] @ g[1] > g[0] @ g[2] + 0.1


def test_clip_without_a_local_directory_says_how_to_provide_it():
    with pytest.raises(ConfigError, match="text_encoder.path"):
        get_text_encoder("clip", path=None)


def test_cache_round_trip_and_corruption(minilm, tmp_path):
    caps = {5: ["a red circle", "a red disc"], 9: ["a blue square"]}
    path = build_text_cache(caps, minilm, tmp_path / "minilm.npz")
    cache = TextCache.load(path)
    assert len(cache) == 3 and cache.rows_for_image(5) == [0, 1]
    row = cache.row(9, "a blue square")
    direct = minilm.encode(["a blue square"])
    assert torch.allclose(cache.features([row]).tokens, direct.tokens, atol=1e-2)
    assert torch.equal(cache.features([row]).token_ids, direct.token_ids)
    with pytest.raises(ArtifactError, match="rebuild"):
        cache.row(9, "a caption that is not there")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # an interrupted write
    with pytest.raises(ArtifactError, match="minilm.npz"):
        TextCache.load(path)


def _mapped(path) -> bool:
    """Whether `path` is memory-mapped into this process (/proc/self/maps)."""
    return str(path) in Path("/proc/self/maps").read_text()


def test_cache_is_built_in_chunks_and_read_by_rows_never_mapped(minilm, tmp_path):
    """Batches of 2 force several chunks; every per-caption member stays on disk after loading and is
    read a batch of rows at a time, never memory-mapped (a mapped page stays in the job's RSS); it
    equals a one-shot encoding, and the file is still a plain .npz that np.load reads."""
    import numpy as np

    from lgvq.arrays import RowArray

    caps = {3: ["a red circle", "a red disc", "one red round shape"], 1: ["a blue square"], 8: ["a green triangle"]}
    path = build_text_cache(caps, minilm, tmp_path / "minilm.npz", batch_size=2)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no build leftovers
    cache = TextCache.load(path)
    for name in ("token_ids", "tokens", "valid", "special", "global_", "captions", "token_embeddings"):
        assert isinstance(getattr(cache, name), RowArray), name
    ordered = [c for iid in sorted(caps) for c in caps[iid]]
    direct = minilm.encode(ordered)
    got = cache.features(range(len(ordered)))
    assert not _mapped(path)
    assert torch.equal(got.token_ids, direct.token_ids) and torch.equal(got.valid, direct.valid)
    # Stored as fp16: within half precision of the fp32 encoding (a one-shot batch pads differently
    # from batches of 2, so the fp32 values themselves may differ in the last bits).
    torch.testing.assert_close(got.tokens, direct.tokens, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(got.global_, direct.global_, rtol=1e-5, atol=1e-5)
    assert cache.rows_for_image(3) == [1, 2, 3] and cache.row(8, "a green triangle") == 4
    with np.load(path, allow_pickle=False) as z:
        assert np.array_equal(z["tokens"], cache.tokens) and list(z["captions"]) == ordered


def test_cache_written_by_np_savez_loads_and_a_cut_member_is_refused(minilm, tmp_path):
    """A cache from before the memory-mapped loader (one np.savez call, rows not sorted by image) is read
    the same; a member whose data runs past the end of the file is a clear error, not a crash."""
    import numpy as np

    path = build_text_cache({5: ["a red circle"], 9: ["a blue square", "a blue box"]}, minilm, tmp_path / "minilm.npz")
    with np.load(path, allow_pickle=False) as z:
        per_row = ("token_ids", "tokens", "valid", "special", "global_", "image_ids", "caption_index", "captions")
        arrays = {k: z[k][::-1].copy() if k in per_row else z[k] for k in z.files}
    legacy = tmp_path / "legacy.npz"
    np.savez(legacy, **arrays)
    cache = TextCache.load(legacy)
    assert cache.rows_for_image(9) == [0, 1] and cache.row(5, "a red circle") == 2
    assert cache.row(9, "a blue box") == 0
    raw = bytes(legacy.read_bytes())

    def edited(member: str, old: bytes, new: bytes, name: str):
        """The cache with one member's .npy header claiming another shape (same length: offsets hold)."""
        at = raw.index(old, raw.index(f"{member}.npy".encode()))
        out = tmp_path / name
        out.write_bytes(raw[:at] + new + raw[at + len(old):])
        return out

    # Keep the zip directory; the tokens header claims 9 captions, the embedding matrix more rows than the file has.
    with pytest.raises(ArtifactError, match=r"rows\.npz.*one row per caption.*rebuild"):
        TextCache.load(edited("tokens", b"'shape': (3, ", b"'shape': (9, ", "rows.npz"))
    vocab = f"'shape': ({minilm.vocab_size}, ".encode()
    with pytest.raises(ArtifactError, match=r"cut\.npz.*past the end of the file.*rebuild"):
        TextCache.load(edited("token_embeddings", vocab, vocab[:10] + b"9" + vocab[11:], "cut.npz"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device: the text cache's encoder on the GPU")
def test_cache_built_on_the_gpu_matches_the_cpu_cache(minilm, tmp_path):
    caps = {1: ["a red circle", "two blue squares above a green triangle"], 2: ["a yellow star"]}
    cpu = TextCache.load(build_text_cache(caps, minilm, tmp_path / "cpu" / "minilm.npz", batch_size=2))
    gpu_encoder = get_text_encoder("minilm", max_length=30, device="cuda")
    gpu = TextCache.load(build_text_cache(caps, gpu_encoder, tmp_path / "gpu" / "minilm.npz", batch_size=2))
    a, b = cpu.features(range(3)), gpu.features(range(3))
    assert torch.equal(a.token_ids, b.token_ids) and torch.equal(a.valid, b.valid)
    assert torch.allclose(a.tokens, b.tokens, atol=2e-2) and torch.allclose(a.global_, b.global_, atol=1e-3)
