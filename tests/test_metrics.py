"""Metrics against their references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lgvq.metrics.codebook import codebook_statistics
from lgvq.metrics.extractors import ImageBatches, ShapesCNN, ShapesCNNExtractor, train_shapes_cnn
from lgvq.metrics.fid import compute_fid, fid_label
from lgvq.metrics.image import psnr_per_image, ssim_per_image, to_uint8


def folder(path, images):
    path.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        Image.fromarray(im).save(path / f"{i:04d}.png")
    return path


def blobs(n, seed, noise=0.0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        im = np.zeros((16, 16, 3), np.float64)
        x, y = rng.integers(0, 10, 2)
        im[y : y + 6, x : x + 6] = rng.integers(50, 255, 3)
        im += rng.normal(0, noise, im.shape)
        out.append(np.clip(im, 0, 255).astype(np.uint8))
    return out


@pytest.fixture(scope="module")
def extractor():
    torch.manual_seed(0)
    return ShapesCNNExtractor(ShapesCNN(4, width=8, feat_dim=16, input_size=16))


def test_our_fid_equals_clean_fids_own(tmp_path, extractor):
    from cleanfid import fid
    from cleanfid.resize import make_resizer

    a, b = folder(tmp_path / "a", blobs(24, 0)), folder(tmp_path / "b", blobs(24, 1, noise=30))
    ours = compute_fid(a, b, extractor=extractor, cache_dir=tmp_path / "cache")
    ref = fid.compute_fid(str(a), str(b), custom_feat_extractor=extractor, device=torch.device("cpu"), num_workers=0,
                          custom_fn_resize=make_resizer("PIL", False, "bicubic", (16, 16)), verbose=False)
    assert ours.value == pytest.approx(ref, rel=1e-6, abs=1e-8)
    assert ours.n_a == 24 and "shapes-cnn" in ours.description and fid_label(ours.extractor) == "FID[shapes-cnn]"
    cached = compute_fid(a, b, extractor=extractor, cache_dir=tmp_path / "cache")
    assert cached.value == pytest.approx(ours.value) and list((tmp_path / "cache").glob("stats-*.npz"))


def test_fid_is_zero_on_itself_and_grows_with_noise(tmp_path, extractor):
    base = blobs(30, 2)
    a = folder(tmp_path / "a", base)
    same = compute_fid(a, a, extractor=extractor).value
    noisy = [compute_fid(folder(tmp_path / f"n{s}", [np.clip(im + np.random.default_rng(0).normal(0, s, im.shape), 0, 255)
                                                    .astype(np.uint8) for im in base]), a, extractor=extractor).value
             for s in (20, 80)]
    assert abs(same) < 1e-4 and 0 < noisy[0] < noisy[1]


def test_psnr_is_the_textbook_formula_per_image():
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a.copy()
    b[0] += 10
    b[1, 0, 0, 0] = 255
    mse = np.array([100.0, 255.0**2 / 48])
    assert np.allclose(psnr_per_image(a, b), 10 * np.log10(255**2 / mse))
    assert np.isinf(psnr_per_image(a, a)).all()
    assert np.allclose(ssim_per_image(a + 7, a + 7), 1.0)


def test_to_uint8_rounds_like_the_saved_pngs():
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0]).view(1, 1, 1, 4).expand(1, 3, 1, 4)
    assert to_uint8(x)[0, 0, :, 0].tolist() == [0, 128, 255, 255]


def test_codebook_statistics_on_hand_made_codes():
    s = codebook_statistics(np.array([[[0, 0], [1, 1]]]), 4)
    assert s["usage"] == 0.5 and s["dead_codes"] == 2 and s["perplexity"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="outside"):
        codebook_statistics(np.array([5]), 4)


def test_shapes_cnn_learns_attributes_and_round_trips(tmp_path):
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(200, 2, generator=g) > 0.5).float()
    x = torch.full((200, 3, 16, 16), -1.0)
    x[:, 0, :8] += 2 * y[:, :1, None]          # attribute 0: red in the top half
    x[:, 2, 8:] += 2 * y[:, 1:, None]          # attribute 1: blue in the bottom half
    model, report = train_shapes_cnn(x, y, epochs=15, seed=0)
    assert report["attribute_accuracy"] > 0.9
    model.save(tmp_path / "m.pt", attribute_names=["a", "b"], report=report)
    again = ShapesCNNExtractor.load(tmp_path / "m.pt")
    assert torch.allclose(again(x[:4] * 127.5 + 127.5), model(x[:4] * 127.5 + 127.5))


def test_shapes_cnn_streamed_a_batch_at_a_time_trains_the_same_weights_as_in_memory():
    g = torch.Generator().manual_seed(1)
    y = (torch.rand(90, 2, generator=g) > 0.5).float()
    x = (torch.rand(90, 3, 16, 16, generator=g) * 255).to(torch.uint8)
    reads: list[int] = []

    def read(lists):  # what the pipeline's loader does: only the asked-for images, one batch at a time
        for idx in lists:
            reads.append(len(idx))
            yield x[idx]

    whole, report = train_shapes_cnn(x, y, epochs=2, seed=3, batch=16)
    streamed, streamed_report = train_shapes_cnn(ImageBatches(90, 16, read), y, epochs=2, seed=3, batch=16)
    # two epochs over the 81 train images (a last batch of one is left out), then the 9 held out
    assert max(reads) == 16 and sum(reads) == 2 * 80 + 9
    for a, b in zip(whole.state_dict().values(), streamed.state_dict().values()):
        assert torch.equal(a, b)
    assert streamed_report == report


def test_fid_and_kid_notes_name_what_their_shapes_cnn_learnt_from(tmp_path):
    """Two shapes-cnn extractors put the same images at different FIDs: the note says which one it was."""
    from lgvq.metrics.fid import compute_kid

    a, b = folder(tmp_path / "a", blobs(8, 0)), folder(tmp_path / "b", blobs(8, 1))
    y = (torch.rand(40, 2, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    trained, report = train_shapes_cnn(torch.zeros(40, 3, 16, 16), y, epochs=2, seed=0, width=8, feat_dim=16)
    learnt = (f"(trained on 36 images x 2 epochs, held-out attribute accuracy "
              f"{100 * report['attribute_accuracy']:.2f} % on 4 more)")
    assert learnt in compute_fid(a, b, extractor=trained).description
    assert learnt in compute_kid(a, b, extractor=trained, subsets=2).description
    bare = ShapesCNNExtractor(ShapesCNN(2, width=8, feat_dim=16, input_size=16))  # no report: nothing claimed
    assert "extractor shapes-cnn, 8 images" in compute_fid(a, b, extractor=bare).description
    assert "extractor shapes-cnn, 2 subsets" in compute_kid(a, b, extractor=bare, subsets=2).description


def test_kid_is_near_zero_on_itself_and_larger_for_another_set(extractor):
    from lgvq.metrics.fid import compute_kid

    a = torch.from_numpy(np.stack(blobs(20, 0))).permute(0, 3, 1, 2).contiguous()
    b = 255 - a  # inverted colours: a clearly different distribution
    same, _ = compute_kid(a, a, extractor=extractor, subsets=5)
    other, _ = compute_kid(a, b, extractor=extractor, subsets=5)
    assert abs(same) < 1e-4 and other > 10 * abs(same)  # unbiased estimator: ~0, may dip below


def test_attribute_accuracy_counts_only_the_requested_attributes():
    from lgvq.metrics.attributes import attribute_accuracy

    classifier = lambda x: x.flatten(1)[:, :3] * 10  # noqa: E731 - logits = first three pixels
    images = torch.tensor([[1.0, -1.0, 1.0], [1.0, 1.0, -1.0]]).view(2, 3, 1, 1)
    wanted = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    full = attribute_accuracy(classifier, images, wanted)
    assert full == pytest.approx({"attribute_accuracy": 5 / 6, "exact_match": 0.5})
    assert attribute_accuracy(classifier, images, wanted, mask=torch.tensor([True, True, False]))["exact_match"] == 1.0


def test_fid_cli_prints_a_labelled_value_equal_to_the_api(tmp_path, extractor, capsys):
    import json

    from lgvq.cli import main

    a, b = folder(tmp_path / "a", blobs(12, 3)), folder(tmp_path / "b", blobs(12, 4))
    extractor.save(tmp_path / "x.pt", attribute_names=list("abcd"), report={})
    rc = main(["metrics", "fid", "--images", str(a), "--reference", str(b), "--extractor", "shapes-cnn",
               "--weights", str(tmp_path / "x.pt"), "--out", str(tmp_path / "fid.json")])
    printed = json.loads(capsys.readouterr().out)
    assert rc == 0 and printed["label"] == "FID[shapes-cnn]" and printed["n_a"] == 12
    assert printed["value"] == pytest.approx(compute_fid(a, b, extractor=extractor).value, rel=1e-6)
    assert json.loads((tmp_path / "fid.json").read_text()) == printed


def test_fid_refuses_a_folder_with_fewer_than_two_images(tmp_path, extractor):
    from lgvq.io import ArtifactError

    one = folder(tmp_path / "one", blobs(1, 5))
    with pytest.raises(ArtifactError, match="at least 2 images in .*one"):
        compute_fid(one, one, extractor=extractor)
