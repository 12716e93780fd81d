"""Perceptual distance from a local VGG16 (the LPIPS backbone).

LPIPS = distances between unit-normalised VGG16 features at five depths, weighted by learned
linear layers. Neither the VGG16 nor the LPIPS weights can be downloaded here, so this loss
exists only when a user points `perceptual_weights` at a torchvision VGG16 state dict; the
learned LPIPS linear weights are replaced by uniform weights (documented in `describe()`).
Without weights, the VQ-GAN family trains with the perceptual term OFF and says so: there is
no silent substitute.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from lgvq.io import ArtifactError

_CUTS = (4, 9, 16, 23, 30)  # after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class VGGPerceptual(nn.Module):
    def __init__(self, weights_path: str | Path) -> None:
        super().__init__()
        from torchvision.models import vgg16

        p = Path(weights_path)
        if not p.is_file():
            raise ArtifactError(f"perceptual_weights: VGG16 weights not found at {p}")
        net = vgg16()
        try:
            net.load_state_dict(torch.load(p, map_location="cpu", weights_only=True))
        except Exception as e:
            raise ArtifactError(f"perceptual_weights: {p} is not a torchvision VGG16 state dict: {e}") from e
        self.features = net.features[: _CUTS[-1]].eval()
        for q in self.parameters():
            q.requires_grad_(False)
        self.register_buffer("mean", _MEAN)
        self.register_buffer("std", _STD)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """a, b in [-1, 1], (B, 3, H, W) -> scalar mean perceptual distance."""
        h = torch.cat([a, b]) * 0.5 + 0.5
        h = (h - self.mean) / self.std
        total = h.new_zeros(())
        start = 0
        for cut in _CUTS:
            h = self.features[start:cut](h)
            start = cut
            fa, fb = h.chunk(2)
            fa = fa / (fa.norm(dim=1, keepdim=True) + 1e-10)
            fb = fb / (fb.norm(dim=1, keepdim=True) + 1e-10)
            total = total + (fa - fb).pow(2).sum(1).mean()
        return total
