"""FID through clean-fid, with the feature extractor as an explicit parameter.

`compute_fid(dir_a, dir_b, extractor=...)` reads both folders with clean-fid's folder reader
(mode "clean": PIL bicubic resize of uint8 images), extracts features with the given
extractor and returns the Frechet distance of the two Gaussians. The hard choices are
explicit: Inception gets clean-fid's 299x299 resize; shapes-cnn reads images at their native
size (a PIL bicubic resize to that same size, i.e. a no-op), since it was trained there.
Reference statistics (mu, sigma) are cached per (folder content, extractor, resize).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lgvq.io import atomic_path


@dataclass
class FIDResult:
    value: float
    extractor: str
    n_a: int
    n_b: int
    library: str

    @property
    def description(self) -> str:
        return f"{self.library}, extractor {self.extractor}, {self.n_a} images vs {self.n_b} reference images"


def fid_label(extractor_name: str) -> str:
    """Column name that says which features an FID used: FID[inception], FID[shapes-cnn]."""
    return f"FID[{extractor_name}]"


def _images(folder: str | Path) -> list[Path]:
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if len(files) < 2:
        raise ValueError(f"FID needs at least 2 images in {folder}, found {len(files)}")
    return files


def _resizer(extractor, folder: str | Path):
    if getattr(extractor, "name", "") == "inception":
        return None  # clean-fid's own 299x299 clean resize
    from PIL import Image

    from cleanfid.resize import make_resizer

    with Image.open(_images(folder)[0]) as im:
        size = im.size
    return make_resizer("PIL", False, "bicubic", size)


def folder_statistics(folder: str | Path, extractor, *, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, int]:
    from cleanfid import fid

    feats = fid.get_folder_features(str(folder), model=extractor, num_workers=0, batch_size=batch_size,
                                    device=torch.device("cpu"), mode="clean",
                                    custom_fn_resize=_resizer(extractor, folder), verbose=False)
    return np.mean(feats, axis=0), np.cov(feats, rowvar=False), len(feats)


def _cached_statistics(folder: str | Path, extractor, cache_dir: Path | None, batch_size: int):
    if cache_dir is None:
        return folder_statistics(folder, extractor, batch_size=batch_size)
    h = hashlib.sha256()
    for f in _images(folder):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    h.update(repr((getattr(extractor, "name", type(extractor).__name__),
                   [(k, v.sum().item()) for k, v in extractor.state_dict().items()][:50])).encode())
    path = Path(cache_dir) / f"stats-{h.hexdigest()[:20]}.npz"
    if path.is_file():
        z = np.load(path)
        return z["mu"], z["sigma"], int(z["n"])
    mu, sigma, n = folder_statistics(folder, extractor, batch_size=batch_size)
    with atomic_path(path) as tmp:
        np.savez(tmp, mu=mu, sigma=sigma, n=n)
    return mu, sigma, n


def compute_fid(images_a_dir: str | Path, images_b_dir: str | Path, *, extractor, cache_dir: Path | None = None,
                batch_size: int = 64) -> FIDResult:
    """FID between two folders; `images_b_dir` is the reference set whose statistics are cached."""
    from cleanfid import fid

    mu_a, s_a, n_a = folder_statistics(images_a_dir, extractor, batch_size=batch_size)
    mu_b, s_b, n_b = _cached_statistics(images_b_dir, extractor, cache_dir, batch_size)
    value = float(fid.frechet_distance(mu_a, s_a, mu_b, s_b))
    return FIDResult(value, getattr(extractor, "name", type(extractor).__name__), n_a, n_b, "clean-fid (clean mode)")


def compute_kid(images_a: torch.Tensor, images_b: torch.Tensor, *, extractor, subsets: int = 20) -> tuple[float, float]:
    """KID (mean, std over subsets) via torchmetrics with the same named extractor; for small sets,
    where FID is biased. Images: uint8 (N, 3, H, W). The subset size adapts to the smaller set."""
    from torchmetrics.image.kid import KernelInceptionDistance

    size = min(len(images_a), len(images_b))
    if size < 2:
        raise ValueError("KID needs at least 2 images per set")

    class _Wrapped(torch.nn.Module):  # torchmetrics passes uint8; our extractors take [0, 255] floats
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x.float())

    kid = KernelInceptionDistance(feature=_Wrapped(extractor), subsets=subsets, subset_size=size)
    kid.update(images_b, real=True)
    kid.update(images_a, real=False)
    mean, std = kid.compute()
    return float(mean), float(std)
