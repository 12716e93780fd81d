"""Feature extractors for FID and KID. Every FID we report names its extractor.

An extractor is anything that satisfies `FeatureExtractor`: it has a `name` (which goes into the
FID column label, `FID[<name>]`), the square `input_size` it wants its images resized to, a
`fingerprint()` that identifies its weights (the reference-statistics cache is keyed on it), and
it maps float images (B, 3, S, S) with values in [0, 255] — clean-fid's convention — to features
(B, D). Two implementations:

- `InceptionExtractor` ("inception"): clean-fid's standard TorchScript Inception-v3 (the paper's
  FID), loaded from a user-supplied `inception-2015-12-05.pt`, because it cannot be downloaded on
  an offline machine.
- `ShapesCNNExtractor` ("shapes-cnn"): a small CNN trained on the embedded data's training split
  to predict the ground-truth attributes (multi-hot); its penultimate features feed FID. Its
  held-out attribute accuracy (and the majority-class baseline) is stored beside its weights, so
  a reader can judge whether its features mean anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from dataclasses import dataclass
from typing import Callable, Iterable, Protocol, Sequence, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lgvq.io import ArtifactError, atomic_torch_save, atomic_write_json

INCEPTION_FILENAME = "inception-2015-12-05.pt"
INCEPTION_INPUT_SIZE = 299


@runtime_checkable
class FeatureExtractor(Protocol):
    """What FID/KID need from a feature extractor (see the module docstring)."""

    name: str

    @property
    def input_size(self) -> int: ...

    def fingerprint(self) -> str: ...

    def __call__(self, images: Tensor) -> Tensor: ...


def state_fingerprint(module: nn.Module) -> str:
    """Hash of every tensor in a module's state dict: two extractors with the same fingerprint
    compute the same features, so cached reference statistics can be reused between them."""
    h = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        t = value.detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:20]


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- shapes-cnn -------------------------------------------------------------------------------

class ShapesCNN(nn.Module):
    """Multi-label attribute classifier; `features` (the penultimate layer) is what FID reads."""

    def __init__(self, n_attributes: int, width: int = 32, feat_dim: int = 128, input_size: int = 32) -> None:
        super().__init__()
        if n_attributes < 1 or width < 1 or feat_dim < 1 or input_size < 4:
            raise ValueError(f"ShapesCNN: bad sizes n_attributes={n_attributes} width={width} "
                             f"feat_dim={feat_dim} input_size={input_size}")
        self.input_size = input_size
        self.width = width
        self.feat_dim = feat_dim
        c = width
        # BatchNorm and max pooling: the attributes are about presence ("is there a red object?"),
        # which average pooling over a mostly-background image washes out.
        self.body = nn.Sequential(
            nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c, 2 * c, 3, padding=1), nn.BatchNorm2d(2 * c), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * c, 4 * c, 3, padding=1), nn.BatchNorm2d(4 * c), nn.ReLU(), nn.AdaptiveMaxPool2d(2),
            nn.Flatten(), nn.Linear(16 * c, feat_dim), nn.ReLU(),
        )
        self.head = nn.Linear(feat_dim, n_attributes)

    @property
    def n_attributes(self) -> int:
        return self.head.out_features

    def features(self, x: Tensor) -> Tensor:
        """x: (B, 3, H, W) in [-1, 1]; resized bilinearly to `input_size` when it differs (FID
        already hands it images at that size; other callers, e.g. attribute accuracy, may not)."""
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Attribute logits (B, A); an attribute is predicted present when its logit is > 0."""
        return self.head(self.features(x))


class ShapesCNNExtractor(nn.Module):
    """FID extractor around a trained `ShapesCNN`: float (B, 3, S, S) in [0, 255] -> (B, feat_dim)."""

    name = "shapes-cnn"

    def __init__(self, model: ShapesCNN, report: dict | None = None) -> None:
        super().__init__()
        self.model = model.eval()
        self.report = dict(report or {})

    @property
    def input_size(self) -> int:
        return self.model.input_size

    def fingerprint(self) -> str:
        return f"{self.name}-{state_fingerprint(self.model)}"

    def training_summary(self) -> str:
        """What it learnt from, for the FID notes: its FIDs are on its own scale (e.g. the train split's
        800 images or eval.shapes_cnn_images' 20000 give different values for the same images)."""
        r = self.report
        if not {"train_images", "heldout_images", "epochs", "attribute_accuracy"} <= set(r):
            return ""  # a sidecar written before these were recorded
        return (f"trained on {r['train_images']} images x {r['epochs']} epochs, held-out attribute accuracy "
                f"{100 * r['attribute_accuracy']:.2f} % on {r['heldout_images']} more")

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        self.model.eval()  # BatchNorm must use its running statistics, whatever the caller did
        return self.model.features(x.float() / 127.5 - 1.0)

    def save(self, path: str | Path, *, attribute_names: Sequence[str], report: dict) -> None:
        """Weights via torch.save (state dict only) + a JSON sidecar `<path>.json` with the sizes,
        the attribute names and the held-out report; both written atomically."""
        if len(attribute_names) != self.model.n_attributes:
            raise ValueError(f"{len(attribute_names)} attribute names for a model with {self.model.n_attributes} outputs")
        atomic_torch_save(path, self.model.state_dict())
        atomic_write_json(Path(path).with_suffix(".json"), {
            "n_attributes": self.model.n_attributes, "input_size": self.model.input_size,
            "width": self.model.width, "feat_dim": self.model.feat_dim,
            "attribute_names": list(attribute_names), "heldout": report})

    @classmethod
    def load(cls, path: str | Path) -> "ShapesCNNExtractor":
        p = Path(path)
        meta_path = p.with_suffix(".json")
        for f in (p, meta_path):
            if not f.is_file():
                raise ArtifactError(f"shapes-cnn extractor missing: {f} (train it with `lgvq metrics train-extractor`)")
        try:
            meta = json.loads(meta_path.read_text())
            # Sidecars written before width/feat_dim were recorded used the defaults.
            model = ShapesCNN(int(meta["n_attributes"]), width=int(meta.get("width", 32)),
                              feat_dim=int(meta.get("feat_dim", 128)), input_size=int(meta["input_size"]))
        except (ValueError, KeyError, TypeError) as e:
            raise ArtifactError(f"corrupt shapes-cnn sidecar {meta_path}: {e!r}") from e
        try:
            model.load_state_dict(torch.load(p, map_location="cpu", weights_only=True))
        except Exception as e:  # unpickling and shape errors alike: the file is not what the sidecar says
            raise ArtifactError(f"corrupt shapes-cnn checkpoint {p}: {e}") from e
        return cls(model, meta.get("heldout", {}))


def as_unit_images(images: Tensor, what: str = "images") -> Tensor:
    """uint8 [0, 255] or float [-1, 1] images (N, 3, H, W) -> float [-1, 1]; anything else is an error
    (a float image in [0, 1] or [0, 255] would silently train or score on the wrong scale)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{what}: expected (N, 3, H, W), got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.float() / 127.5 - 1.0
    if not images.is_floating_point():
        raise ValueError(f"{what}: expected uint8 or float images, got {images.dtype}")
    if not torch.isfinite(images).all():
        raise ValueError(f"{what}: contains NaN or inf")
    lo, hi = float(images.min()), float(images.max())
    if lo < -1.0 - 1e-4 or hi > 1.0 + 1e-4:
        raise ValueError(f"{what}: float images must lie in [-1, 1], got [{lo:.3g}, {hi:.3g}]")
    return images.float()


def _binary_accuracy(logits: Tensor, targets: Tensor) -> tuple[Tensor, float]:
    correct = (logits > 0).float() == targets
    return correct.float().mean(0), float(correct.all(1).float().mean())


@dataclass(frozen=True)
class ImageBatches:
    """`n` images of `size` px read a batch at a time: `read(index_lists)` yields one (b, 3, S, S) tensor
    per list, in order (e.g. through lgvq.data.loader.image_batches), so training never holds the split."""

    n: int
    size: int
    read: Callable[[list[list[int]]], Iterable[Tensor]]


def _in_memory(images: Tensor) -> ImageBatches:
    x = as_unit_images(images, "train_shapes_cnn images")
    return ImageBatches(len(x), x.shape[-1], lambda lists: (x[torch.as_tensor(i)] for i in lists))


def train_shapes_cnn(images: Tensor | ImageBatches, targets: Tensor, *, epochs: int = 8, seed: int = 0, batch: int = 64,
                     heldout_fraction: float = 0.1, lr: float = 2e-3, width: int = 32, feat_dim: int = 128,
                     attribute_names: Sequence[str] | None = None) -> tuple[ShapesCNNExtractor, dict]:
    """Fit a ShapesCNN on (1 - heldout_fraction) of the images and score it on the rest.

    images: (N, 3, H, W), uint8 or float in [-1, 1], or `ImageBatches` reading them a batch at a time
    (the same batches, so the same weights); targets: (N, A) multi-hot in {0, 1}.
    The report holds the held-out per-attribute binary accuracy (by name when `attribute_names`
    is given), its mean, the exact-match rate (all A attributes right), and the same two numbers
    for the majority-class predictor fitted on the training part — the chance level to beat.
    Deterministic given `seed`; the caller's global RNG state is left untouched.
    """
    source = images if isinstance(images, ImageBatches) else _in_memory(images)
    y = torch.as_tensor(targets).float()
    if y.ndim != 2 or len(y) != source.n:
        raise ValueError(f"train_shapes_cnn: targets must be (N, A) with N={source.n}, got {tuple(y.shape)}")
    if not ((y == 0) | (y == 1)).all():
        raise ValueError("train_shapes_cnn: targets must be multi-hot (only 0 and 1)")
    if attribute_names is not None and len(attribute_names) != y.shape[1]:
        raise ValueError(f"train_shapes_cnn: {len(attribute_names)} attribute names for {y.shape[1]} attributes")
    if not 0.0 < heldout_fraction < 1.0 or epochs < 1 or batch < 2:
        raise ValueError(f"train_shapes_cnn: need 0 < heldout_fraction < 1, epochs >= 1, batch >= 2 "
                         f"(got {heldout_fraction}, {epochs}, {batch})")
    n = source.n
    n_val = max(1, int(n * heldout_fraction))
    if n - n_val < 2:
        raise ValueError(f"train_shapes_cnn: {n} images are too few to hold out {n_val}")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    val, tr = perm[:n_val], perm[n_val:]

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # weight initialisation
        model = ShapesCNN(y.shape[1], width=width, feat_dim=feat_dim, input_size=source.size)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    last_loss = float("nan")
    from tqdm.auto import tqdm

    for _ in tqdm(range(epochs), desc=f"shapes-cnn ({n - n_val} images)", unit="epoch"):
        model.train()
        order = tr[torch.randperm(len(tr), generator=g)].tolist()
        # BatchNorm cannot normalise a single image: a last batch of one is left out
        lists = [idx for idx in (order[i : i + batch] for i in range(0, len(order), batch)) if len(idx) >= 2]
        for idx, xb in zip(lists, source.read(lists), strict=True):
            xb = as_unit_images(xb, "train_shapes_cnn images")
            loss = F.binary_cross_entropy_with_logits(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            last_loss = float(loss.detach())

    model.eval()
    with torch.no_grad():
        held = [val[i : i + batch].tolist() for i in range(0, n_val, batch)]  # eval-mode BatchNorm: batching is exact
        logits = torch.cat([model(as_unit_images(xb, "train_shapes_cnn images")) for xb in source.read(held)])
        per_attr, exact = _binary_accuracy(logits, y[val])
    majority = (y[tr].mean(0) > 0.5).float()  # predicts each attribute's most frequent training value
    chance_attr, chance_exact = _binary_accuracy(majority.expand(n_val, -1) * 2 - 1, y[val])
    names = list(attribute_names) if attribute_names is not None else [str(i) for i in range(y.shape[1])]
    report = {
        "heldout_images": int(n_val), "train_images": int(n - n_val),
        "attribute_accuracy": float(per_attr.mean()), "exact_match": exact,
        "per_attribute": {k: float(v) for k, v in zip(names, per_attr)},
        "chance_attribute_accuracy": float(chance_attr.mean()), "chance_exact_match": chance_exact,
        "final_train_loss": last_loss, "epochs": epochs, "seed": seed,
    }
    return ShapesCNNExtractor(model, report), report


# --- inception ---------------------------------------------------------------------------------

class InceptionExtractor(nn.Module):
    """clean-fid's Inception-v3 (TorchScript, 2048-d pool features) from a local weights file.

    clean-fid itself would look for the file in /tmp and download it when missing; we load the
    file the user gave through clean-fid's own wrapper (`InceptionV3W`, download off), so the
    features are exactly clean-fid's "clean" mode features and no network is ever touched.
    """

    name = "inception"

    def __init__(self, weights_path: str | os.PathLike | None) -> None:
        super().__init__()
        from cleanfid.downloads_helper import inception_url
        from cleanfid.inception_torchscript import InceptionV3W

        p = Path(weights_path) if weights_path else None
        if p is None or not p.is_file():
            raise ArtifactError(
                f"eval.inception_weights: Inception weights for FID not found at {str(p)!r}. Download clean-fid's "
                f"'{INCEPTION_FILENAME}' ({inception_url}) on a connected machine, put it at that path (or point "
                "eval.inception_weights to it), or use eval.fid_extractor: shapes-cnn.")
        with tempfile.TemporaryDirectory(prefix="lgvq-inception-") as tmp:
            folder = p.parent
            if p.name != INCEPTION_FILENAME:  # InceptionV3W only reads that exact file name
                folder = Path(tmp)
                os.symlink(p.resolve(), folder / INCEPTION_FILENAME)
            try:
                self.net = InceptionV3W(str(folder), download=False, resize_inside=False).eval()
            except Exception as e:  # torch.jit.load raises several types for a bad file
                raise ArtifactError(f"eval.inception_weights: {p} is not clean-fid's TorchScript Inception: {e}") from e
        self._fingerprint = f"{self.name}-{_file_sha256(p)[:20]}"

    @property
    def input_size(self) -> int:
        return INCEPTION_INPUT_SIZE

    def fingerprint(self) -> str:
        return self._fingerprint

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.float())
