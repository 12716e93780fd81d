"""VQ-GAN (Esser et al., 2021): the VQ-VAE with L1 + perceptual reconstruction and a hinge
PatchGAN loss whose weight adapts to balance the reconstruction and adversarial gradients at
the decoder's last layer (lambda = ||grad nll|| / (||grad g|| + 1e-4), clamped to [0, 1e4],
times disc_weight). The adversarial terms are off before `disc_start` steps."""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import Tensor

from lgvq.tokenizers.base import TokenizerOutput
from lgvq.tokenizers.discriminator import PatchDiscriminator
from lgvq.tokenizers.perceptual import VGGPerceptual
from lgvq.tokenizers.vqvae import VQVAE


class VQGAN(VQVAE):
    def __init__(self, *, image_size: int, disc_start: int = 10000, disc_weight: float = 0.8,
                 disc_ch: int = 64, disc_layers: int = 3, perceptual_weights: str | None = None,
                 perceptual_weight: float = 1.0, **vq_params) -> None:
        super().__init__(image_size=image_size, **vq_params)
        self.discriminator = PatchDiscriminator(3, disc_ch, disc_layers)
        self.perceptual = VGGPerceptual(perceptual_weights) if perceptual_weights else None
        self.perceptual_weight = perceptual_weight if self.perceptual is not None else 0.0
        self.disc_start, self.disc_weight = disc_start, disc_weight

    def adaptive_weight(self, nll: Tensor, g_loss: Tensor) -> Tensor:
        last = self.decoder.last_layer
        g_nll = torch.autograd.grad(nll, last, retain_graph=True)[0]
        g_adv = torch.autograd.grad(g_loss, last, retain_graph=True)[0]
        return (g_nll.norm() / (g_adv.norm() + 1e-4)).clamp(0.0, 1e4).detach() * self.disc_weight

    def generator_losses(self, x: Tensor, out: TokenizerOutput, step: int) -> dict[str, Tensor]:
        terms = {"rec": (out.x_rec - x).abs().mean(), **self.vq_losses(out)}
        if self.perceptual is not None:
            terms["perceptual"] = self.perceptual_weight * self.perceptual(out.x_rec, x)
        if step >= self.disc_start and self.training:
            nll = terms["rec"] + terms.get("perceptual", 0.0)
            g_loss = -self.discriminator(out.x_rec).float().mean()
            terms["gan"] = self.adaptive_weight(nll, g_loss) * g_loss
        return terms

    def discriminator_losses(self, x: Tensor, out: TokenizerOutput, step: int) -> dict[str, Tensor]:
        if step < self.disc_start:
            return {}
        # The hinge reduced in fp32 under bf16 autocast (.float() is a no-op in an fp32 step).
        real, fake = self.discriminator(x.detach()).float(), self.discriminator(out.x_rec.detach()).float()
        return {"disc": 0.5 * (F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean())}

    def describe(self) -> dict:
        perceptual = ("VGG16 feature distance (LPIPS backbone, uniform layer weights)" if self.perceptual is not None
                      else "off (no local VGG weights)")
        return {**super().describe(), "loss": f"L1 + perceptual + {self._vq_terms()} + adaptive hinge GAN",
                "perceptual": perceptual, "disc_start": self.disc_start, "disc_weight": self.disc_weight}
