"""PSNR and SSIM: per image, RGB, on uint8 images (data_range 255), then averaged by the caller.

The field computes "PSNR" several ways (Y channel vs RGB, per image vs pooled over the batch as
torchmetrics' default does, [0, 1] vs [0, 255]); ours, stated in every table footer:
- images are first quantised exactly as they are saved to PNG: round(clamp(x, -1, 1) * 127.5 + 127.5)
  (`to_uint8`), so the metric scores what a reader can look at;
- PSNR = 10 log10(255^2 / MSE) per image, MSE over all pixels and the 3 channels; an exact
  reconstruction gives +inf (as scikit-image does), which the caller's mean then reports;
- SSIM from scikit-image (`structural_similarity`, channel_axis=-1, data_range=255): its default
  7x7 uniform window, K1 = 0.01, K2 = 0.03, sample covariance, mean over the three channels. For
  images under 7 pixels the window shrinks to the largest odd size that fits. (torchmetrics'
  Gaussian-window SSIM differs by ~2e-5 through border handling; we use scikit-image throughout.)
Inputs are numpy arrays (N, H, W, 3) uint8 — the layout `to_uint8` returns.
"""

from __future__ import annotations

import numpy as np
import torch


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) float in [-1, 1] -> (B, H, W, C) uint8, rounded and clamped like the saved PNGs."""
    if x.ndim != 4:
        raise ValueError(f"to_uint8: expected (B, C, H, W), got shape {tuple(x.shape)}")
    x = x.detach().float()
    if not torch.isfinite(x).all():
        raise ValueError("to_uint8: images contain NaN or inf (a diverged model?)")
    y = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return y.permute(0, 2, 3, 1).cpu().numpy()


def _check_pair(a: np.ndarray, b: np.ndarray, metric: str) -> None:
    for name, arr in (("first", a), ("second", b)):
        if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8:
            raise TypeError(f"{metric}: the {name} image batch must be a uint8 numpy array (use to_uint8), "
                            f"got {getattr(arr, 'dtype', type(arr))}")
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise ValueError(f"{metric}: expected (N, H, W, 3) images, got {arr.shape}")
    if a.shape != b.shape:
        raise ValueError(f"{metric} needs images of equal shape, got {a.shape} and {b.shape}")
    if len(a) == 0:
        raise ValueError(f"{metric}: no images")


def psnr_per_image(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) PSNR in dB of each image pair; +inf where the images are identical."""
    _check_pair(a, b, "PSNR")
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(1)
    with np.errstate(divide="ignore"):
        return np.where(mse == 0, np.inf, 10 * np.log10(255.0**2 / np.maximum(mse, 1e-300)))


def ssim_win_size(height: int, width: int) -> int:
    """scikit-image's default 7, or the largest odd window that fits a smaller image."""
    win = min(7, height, width)
    win -= 1 - win % 2
    if win < 3:
        raise ValueError(f"SSIM needs images of at least 3x3 pixels, got {height}x{width}")
    return win


def ssim_per_image(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) SSIM of each image pair (scikit-image, RGB, data_range 255)."""
    from skimage.metrics import structural_similarity

    _check_pair(a, b, "SSIM")
    win = ssim_win_size(a.shape[1], a.shape[2])
    return np.array([structural_similarity(x, y, channel_axis=-1, data_range=255, win_size=win)
                     for x, y in zip(a, b)], dtype=np.float64)
