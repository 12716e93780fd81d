"""What every dataset source gives: per split, image records (path, captions, optional label map
and ground-truth attributes) and, where the dataset has them, the task annotations (COCO-QA
questions, referring expressions).

The readers of the on-disk layouts subclass `DatasetSource` (the embedded dataset's and the real
datasets' in lgvq/data/sources/); the registry (registry.py, `DATASETS`) finds them by name. These classes are
also importable from `lgvq.data.registry`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lgvq.io import ArtifactError


@dataclass(frozen=True)
class ImageRecord:
    image_id: int
    path: Path
    captions: tuple[str, ...]
    mask_path: Path | None = None
    attributes: dict | None = None


@dataclass(frozen=True)
class QARecord:
    image_id: int
    question: str
    answer: str
    qtype: int


@dataclass(frozen=True)
class RefRecord:
    ref_id: int
    image_id: int
    sentence: str
    bbox_xywh: tuple[float, float, float, float]
    # (width, height) of the image the box's pixels refer to (its instances.json entry); None when the
    # source does not say, and the grounding job then reads the original image file
    image_wh: tuple[int, int] | None = None


class DatasetSource(ABC):
    name: str

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ArtifactError(f"dataset root not found: {self.root}")

    @abstractmethod
    def splits(self) -> list[str]: ...

    @abstractmethod
    def records(self, split: str) -> list[ImageRecord]: ...

    def has_qa(self) -> bool:
        return type(self).qa is not DatasetSource.qa

    def has_label_maps(self) -> bool | None:
        """Whether the records carry label maps (`mask_path`), known without listing them; None = cannot
        tell (a plug-in source): the plan then keeps semantic synthesis and its job says if they are missing."""
        return None

    def has_refs(self) -> bool:
        return type(self).refs is not DatasetSource.refs

    def qa(self, split: str) -> list[QARecord]:
        raise ArtifactError(f"dataset '{self.name}' at {self.root} has no question-answer annotations")

    def refs(self, split: str) -> Sequence[RefRecord]:
        raise ArtifactError(f"dataset '{self.name}' at {self.root} has no referring expressions")
