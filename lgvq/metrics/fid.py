"""FID (and KID) through clean-fid, with the feature extractor as an explicit parameter.

The choices that make FIDs incomparable across papers are fixed here and written into every
result (`FIDResult.library`, `.description`):
- images are read from folders of PNG/JPEG files (non-recursive; hidden files such as
  half-written temporaries are ignored) in sorted order;
- each image is resized with clean-fid's "clean" resize — PIL bicubic on float pixels, no
  re-quantisation — to the extractor's `input_size` (299 for Inception, exactly clean-fid's
  clean mode; the shapes-cnn's own training size otherwise, a no-op for images already that size);
- features go through clean-fid's `get_files_features`, and mu / sigma (np.mean, np.cov) through
  clean-fid's `frechet_distance`, so our number equals `cleanfid.fid.compute_fid` with the same
  extractor and resize.
The reference side's statistics are cached as npz, keyed by the folder's content hash and the
extractor's fingerprint: many tokenizers are compared against one reference set.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from lgvq.io import ArtifactError, atomic_path
from lgvq.metrics.extractors import FeatureExtractor

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})
# A cache written under another resize or statistics convention must not be reused: bump this.
_STATS_VERSION = "1"


def library_string() -> str:
    return f"clean-fid {version('clean-fid')} (clean mode: PIL bicubic float resize)"


@dataclass(frozen=True)
class FIDResult:
    value: float
    extractor: str   # the extractor's name: it goes into the column label FID[<extractor>]
    n_a: int         # images on the evaluated side
    n_b: int         # images on the reference side
    library: str     # library, version and resize mode
    reference: str = ""  # the reference folder
    extractor_training: str = ""  # what a trained extractor learnt from (shapes-cnn): FIDs of two are not comparable

    @property
    def description(self) -> str:
        ref = f" ({self.reference})" if self.reference else ""
        trained = f" ({self.extractor_training})" if self.extractor_training else ""
        return (f"{self.library}, extractor {self.extractor}{trained}, {self.n_a} images vs "
                f"{self.n_b} reference images{ref}")

    def to_dict(self) -> dict:
        return {**asdict(self), "label": fid_label(self.extractor), "description": self.description}


def fid_label(extractor_name: str) -> str:
    """Column name that says which features an FID used: FID[inception], FID[shapes-cnn]."""
    if not extractor_name:
        raise ValueError("an FID label needs the extractor's name")
    return f"FID[{extractor_name}]"


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The images FID reads from `folder`, sorted; at least 2 (a covariance needs two samples)."""
    root = Path(folder)
    if not root.is_dir():
        raise ArtifactError(f"FID image folder not found: {root}")
    files = sorted(p for p in root.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < 2:
        raise ArtifactError(f"FID needs at least 2 images in {root}, found {len(files)}")
    return files


def _resizer(extractor: FeatureExtractor):
    from cleanfid.resize import make_resizer

    s = int(extractor.input_size)
    return make_resizer("PIL", False, "bicubic", (s, s))  # == clean-fid's "clean" resizer when s == 299


def files_features(files: list[Path], extractor: FeatureExtractor, *, batch_size: int = 64,
                   device: str | torch.device = "cpu") -> np.ndarray:
    """(N, D) features of `files`, read and resized exactly as clean-fid's folder reader does."""
    from cleanfid import fid

    dev = torch.device(device)
    if isinstance(extractor, torch.nn.Module):
        extractor.to(dev)
    feats = fid.get_files_features([str(f) for f in files], model=extractor, num_workers=0, batch_size=batch_size,
                                   device=dev, mode="clean", custom_fn_resize=_resizer(extractor), verbose=False)
    if feats.ndim != 2 or len(feats) != len(files):
        raise ValueError(f"extractor {extractor.name} returned features of shape {feats.shape} for "
                         f"{len(files)} images; expected (N, D)")
    if not np.isfinite(feats).all():
        raise ValueError(f"extractor {extractor.name} returned NaN/inf features for images in {files[0].parent}")
    return feats


def feature_statistics(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """mu and sigma as clean-fid computes them (np.cov: unbiased, N - 1)."""
    return np.mean(feats, axis=0), np.cov(feats, rowvar=False)


def folder_statistics(folder: str | os.PathLike, extractor: FeatureExtractor, *, batch_size: int = 64,
                      device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray, int]:
    files = image_files(folder)
    mu, sigma = feature_statistics(files_features(files, extractor, batch_size=batch_size, device=device))
    return mu, sigma, len(files)


def statistics_key(folder: str | os.PathLike, extractor: FeatureExtractor) -> str:
    """Content hash of the folder's images (names and bytes) + the extractor's fingerprint and
    input size + our statistics convention: equal keys mean equal statistics."""
    h = hashlib.sha256(f"v{_STATS_VERSION}|{extractor.fingerprint()}|{extractor.input_size}".encode())
    for f in image_files(folder):
        h.update(f"|{f.name}|{f.stat().st_size}|".encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def reference_statistics(folder: str | os.PathLike, extractor: FeatureExtractor, cache_dir: str | os.PathLike | None,
                         *, batch_size: int = 64, device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray, int]:
    """mu, sigma, n of a reference folder, from `cache_dir` when computed before (atomic npz)."""
    if cache_dir is None:
        return folder_statistics(folder, extractor, batch_size=batch_size, device=device)
    key = statistics_key(folder, extractor)
    path = Path(cache_dir) / f"stats-{extractor.name}-{key[:24]}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                if str(z["key"]) != key:
                    raise ValueError("its key does not match the folder and extractor")
                return z["mu"], z["sigma"], int(z["n"])
        except Exception as e:  # noqa: BLE001 - any unreadable cache is reported, not recomputed silently
            raise ArtifactError(f"corrupt FID statistics cache {path} ({e}); delete it to recompute") from e
    mu, sigma, n = folder_statistics(folder, extractor, batch_size=batch_size, device=device)
    with atomic_path(path) as tmp:
        np.savez(tmp, mu=mu, sigma=sigma, n=n, key=key)
    return mu, sigma, n


def compute_fid(images_a_dir: str | os.PathLike, images_b_dir: str | os.PathLike, *, extractor: FeatureExtractor,
                cache_dir: str | os.PathLike | None = None, batch_size: int = 64,
                device: str | torch.device = "cpu") -> FIDResult:
    """FID between the images in two folders; `images_b_dir` is the reference set (its
    statistics are cached in `cache_dir` when given)."""
    from cleanfid import fid

    mu_a, s_a, n_a = folder_statistics(images_a_dir, extractor, batch_size=batch_size, device=device)
    mu_b, s_b, n_b = reference_statistics(images_b_dir, extractor, cache_dir, batch_size=batch_size, device=device)
    value = float(fid.frechet_distance(mu_a, s_a, mu_b, s_b))
    return FIDResult(value, extractor.name, n_a, n_b, library_string(), Path(images_b_dir).name,
                     extractor_training(extractor))


def extractor_training(extractor: FeatureExtractor) -> str:
    """What a trained extractor learnt from (its `training_summary`), "" for a fixed one (Inception)."""
    return getattr(extractor, "training_summary", lambda: "")()


# --- KID ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KIDResult:
    mean: float
    std: float
    extractor: str
    n_a: int
    n_b: int
    subset_size: int
    subsets: int
    library: str
    extractor_training: str = ""  # as FIDResult's: KIDs of two shapes-cnn extractors are not comparable

    @property
    def description(self) -> str:
        trained = f" ({self.extractor_training})" if self.extractor_training else ""
        return (f"{self.library}, extractor {self.extractor}{trained}, {self.subsets} subsets of {self.subset_size}; "
                f"{self.n_a} images vs {self.n_b} reference images")

    def __iter__(self) -> Iterator[float]:
        """`mean, std = compute_kid(...)` unpacks like torchmetrics' (mean, std) pair."""
        return iter((self.mean, self.std))


def _load_images(source: str | os.PathLike | torch.Tensor, what: str) -> list[np.ndarray]:
    """A folder (read like FID reads it) or a uint8 tensor (N, 3, H, W) -> list of HWC uint8 arrays."""
    if isinstance(source, torch.Tensor):
        if source.dtype != torch.uint8 or source.ndim != 4 or source.shape[1] != 3:
            raise ValueError(f"KID {what}: expected a uint8 tensor (N, 3, H, W), got {source.dtype} "
                             f"{tuple(source.shape)}")
        return list(source.permute(0, 2, 3, 1).cpu().numpy())
    from PIL import Image

    out = []
    for f in image_files(source):
        with Image.open(f) as im:
            out.append(np.array(im.convert("RGB")))
    return out


def _resized_batches(images: list[np.ndarray], extractor: FeatureExtractor, batch_size: int) -> Iterator[torch.Tensor]:
    resize = _resizer(extractor)
    for i in range(0, len(images), batch_size):
        chunk = [torch.from_numpy(np.ascontiguousarray(resize(im))).permute(2, 0, 1) for im in images[i : i + batch_size]]
        yield torch.stack(chunk).float()


def compute_kid(images_a: str | os.PathLike | torch.Tensor, images_b: str | os.PathLike | torch.Tensor, *,
                extractor: FeatureExtractor, subsets: int = 100, subset_size: int = 1000, seed: int = 0,
                batch_size: int = 64) -> KIDResult:
    """KID (mean, std over random subsets) via torchmetrics' KernelInceptionDistance with our
    extractor as its feature module; unbiased, so it suits the small sets where FID is biased.

    `images_b` is the reference side. Each side is a folder or a uint8 tensor (N, 3, H, W); images
    get FID's clean resize to `extractor.input_size`. The subset size shrinks to the smaller set
    (torchmetrics' default is 1000); subsets are drawn from a generator seeded with `seed`.
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    a, b = _load_images(images_a, "images_a"), _load_images(images_b, "images_b")
    size = min(subset_size, len(a), len(b))
    if size < 2:
        raise ValueError(f"KID needs at least 2 images per set, got {len(a)} and {len(b)}")
    kid = KernelInceptionDistance(feature=extractor, subsets=subsets, subset_size=size)
    with torch.no_grad():
        for batch in _resized_batches(b, extractor, batch_size):
            kid.update(batch, real=True)
        for batch in _resized_batches(a, extractor, batch_size):
            kid.update(batch, real=False)
        with torch.random.fork_rng(devices=[]):  # torchmetrics draws subsets with the global RNG
            torch.manual_seed(seed)
            mean, std = kid.compute()
    return KIDResult(float(mean), float(std), extractor.name, len(a), len(b), size, subsets,
                     f"torchmetrics {version('torchmetrics')} KernelInceptionDistance, clean resize",
                     extractor_training(extractor))
