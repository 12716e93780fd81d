"""PatchGAN discriminator (pix2pix's NLayerDiscriminator design): strided 4x4 convs with
BatchNorm and LeakyReLU, ending in a 1-channel map of per-patch real/fake logits."""

from __future__ import annotations

from torch import Tensor, nn


class PatchDiscriminator(nn.Module):
    def __init__(self, in_channels: int = 3, ch: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ch, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ch * prev, ch * mult, 4, stride, 1, bias=False), nn.BatchNorm2d(ch * mult),
                       nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ch * mult, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
