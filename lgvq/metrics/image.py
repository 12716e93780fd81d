"""PSNR and SSIM, per image, RGB, on uint8 images (data_range 255), then averaged.

This is the convention we state in every table footer: images are quantised exactly as they
are saved (round(clamp(x, -1, 1) * 127.5 + 127.5)), PSNR = 10 log10(255^2 / MSE) per image
(torchmetrics' default would pool the error over the batch), SSIM from scikit-image with
channel_axis and data_range=255 (Gaussian window off: the 7x7 uniform window of its default).
"""

from __future__ import annotations

import numpy as np
import torch


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) float in [-1, 1] -> (B, H, W, 3) uint8."""
    y = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return y.permute(0, 2, 3, 1).cpu().numpy()


def psnr_per_image(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.shape != b.shape:
        raise ValueError(f"PSNR needs images of equal shape, got {a.shape} and {b.shape}")
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(1)
    with np.errstate(divide="ignore"):
        return np.where(mse == 0, np.inf, 10 * np.log10(255.0**2 / mse))


def ssim_per_image(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from skimage.metrics import structural_similarity

    if a.shape != b.shape:
        raise ValueError(f"SSIM needs images of equal shape, got {a.shape} and {b.shape}")
    win = min(7, a.shape[1], a.shape[2])
    win -= 1 - win % 2  # odd window for small images
    return np.array([structural_similarity(x, y, channel_axis=-1, data_range=255, win_size=win) for x, y in zip(a, b)])
