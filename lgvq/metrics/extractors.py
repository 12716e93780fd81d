"""Feature extractors for FID. Every FID we report names its extractor.

- `inception`: clean-fid's standard Inception (the paper's FID), from a user-supplied
  `inception-2015-12-05.pt` (it cannot be downloaded here).
- `shapes-cnn`: a small CNN trained on the embedded data's training split to predict the
  ground-truth attributes (multi-hot: shapes, colours, count); its penultimate 128-d features
  feed FID. Its held-out attribute accuracy is recorded beside it, so a reader can judge
  whether its features mean something.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lgvq.io import ArtifactError, atomic_path, atomic_write_json


class ShapesCNN(nn.Module):
    name = "shapes-cnn"

    def __init__(self, n_attributes: int, width: int = 32, feat_dim: int = 128, input_size: int = 32) -> None:
        super().__init__()
        self.input_size = input_size
        c = width
        # BatchNorm and max pooling: attributes are about presence ("is there a red object?"),
        # which average pooling over a mostly-background image washes out.
        self.body = nn.Sequential(
            nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c, 2 * c, 3, padding=1), nn.BatchNorm2d(2 * c), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * c, 4 * c, 3, padding=1), nn.BatchNorm2d(4 * c), nn.ReLU(), nn.AdaptiveMaxPool2d(2),
            nn.Flatten(), nn.Linear(16 * c, feat_dim), nn.ReLU(),
        )
        self.head = nn.Linear(feat_dim, n_attributes)

    def features(self, x: Tensor) -> Tensor:
        """x in [-1, 1] at any size (resized bilinearly to input_size)."""
        if x.shape[-1] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class ShapesCNNExtractor(nn.Module):
    """clean-fid custom extractor: receives float (B, 3, H, W) in [0, 255]."""

    name = "shapes-cnn"

    def __init__(self, model: ShapesCNN, report: dict | None = None) -> None:
        super().__init__()
        self.model = model.eval()
        self.report = report or {}

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        return self.model.features(x / 127.5 - 1.0)

    def save(self, path: str | Path, *, attribute_names: list[str], report: dict) -> None:
        with atomic_path(path) as tmp:
            torch.save(self.model.state_dict(), tmp)
        atomic_write_json(Path(path).with_suffix(".json"), {
            "n_attributes": self.model.head.out_features, "input_size": self.model.input_size,
            "attribute_names": attribute_names, "heldout": report})

    @classmethod
    def load(cls, path: str | Path) -> "ShapesCNNExtractor":
        p = Path(path)
        meta_path = p.with_suffix(".json")
        if not p.is_file() or not meta_path.is_file():
            raise ArtifactError(f"shapes-cnn extractor missing: {p} (train it with `lgvq metrics train-extractor`)")
        meta = json.loads(meta_path.read_text())
        model = ShapesCNN(meta["n_attributes"], input_size=meta["input_size"])
        try:
            model.load_state_dict(torch.load(p, map_location="cpu", weights_only=True))
        except Exception as e:
            raise ArtifactError(f"corrupt shapes-cnn checkpoint {p}: {e}") from e
        return cls(model, meta["heldout"])


def train_shapes_cnn(images: Tensor, targets: Tensor, *, epochs: int = 8, seed: int = 0, batch: int = 64,
                     heldout_fraction: float = 0.1) -> tuple[ShapesCNNExtractor, dict]:
    """Fit on (1 - heldout) of the images; report per-attribute and exact-match accuracy on the rest."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    n = len(images)
    perm = torch.randperm(n, generator=g)
    n_val = max(1, int(n * heldout_fraction))
    val, tr = perm[:n_val], perm[n_val:]
    model = ShapesCNN(targets.shape[1], input_size=images.shape[-1])
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(epochs):
        model.train()
        order = tr[torch.randperm(len(tr), generator=g)]
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            loss = F.binary_cross_entropy_with_logits(model(images[idx]), targets[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = (model(images[val]) > 0).float()
    correct = pred == targets[val]
    report = {"heldout_images": int(n_val), "attribute_accuracy": float(correct.float().mean()),
              "exact_match": float(correct.all(1).float().mean()), "epochs": epochs, "seed": seed}
    return ShapesCNNExtractor(model, report), report


class InceptionExtractor(nn.Module):
    """clean-fid's Inception from a local weights file (clean-fid reads it from the temp dir)."""

    name = "inception"

    def __init__(self, weights_path: str | Path | None) -> None:
        super().__init__()
        if not weights_path or not Path(weights_path).is_file():
            raise ArtifactError(
                f"eval.inception_weights: Inception weights for FID not found ({weights_path!r}). Place clean-fid's "
                "'inception-2015-12-05.pt' on disk and set eval.inception_weights, or use eval.fid_extractor: shapes-cnn.")
        target = Path(tempfile.gettempdir()) / "inception-2015-12-05.pt"
        if not target.exists():
            shutil.copyfile(weights_path, target)
        from cleanfid.features import build_feature_extractor

        self.fn = build_feature_extractor("clean", torch.device("cpu"))

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)
