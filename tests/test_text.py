"""Text encoders and the feature cache."""

from __future__ import annotations

import pytest
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
