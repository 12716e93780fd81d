"""`MetricRecord`: what every evaluation writes (eval/<kind>/.../metrics.json) and the table
builder reads. One definition of the header, so a stage cannot forget a field and the tables
can trust the types; task-specific fields (examples, per-type accuracy, the stage-2 task) go in
`extra` and are written beside the standard ones."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lgvq.io import ArtifactError, atomic_write_json, read_json

_FIELDS = ("kind", "dataset", "tokenizer", "variant", "seed", "metrics", "notes", "labels", "not_computed")


@dataclass
class MetricRecord:
    kind: str                  # which evaluation (the tables' `kinds`): "reconstruction", "vqa", ...
    dataset: str
    tokenizer: str
    variant: str
    seed: int
    metrics: dict[str, float]  # metric key -> value (lgvq.metrics.catalogue says direction and scale)
    notes: dict[str, str] = field(default_factory=dict)         # metric key -> how it was computed
    labels: dict[str, Any] = field(default_factory=dict)        # what produced it (head, text encoder, ...)
    not_computed: dict[str, str] = field(default_factory=dict)  # metric family -> why it is missing
    extra: dict[str, Any] = field(default_factory=dict)
    source: str = "<record>"   # the file it was read from (for error messages; not written)

    def __post_init__(self) -> None:
        if not isinstance(self.metrics, dict):
            raise ArtifactError(f"metric record {self.source}: 'metrics' must be a mapping")
        for k, v in self.metrics.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise ArtifactError(f"metric record {self.source}: metric '{k}' is {v!r}, not a number")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "dataset": self.dataset, "tokenizer": self.tokenizer, "variant": self.variant,
                "seed": self.seed, "metrics": self.metrics, "notes": self.notes, **self.extra,
                "labels": self.labels, "not_computed": self.not_computed}

    def write(self, folder: str | Path) -> Path:
        path = Path(folder) / "metrics.json"
        atomic_write_json(path, self.to_json())
        return path

    @classmethod
    def from_json(cls, rec: dict[str, Any], source: str = "<record>") -> "MetricRecord":
        for key in ("kind", "dataset", "tokenizer", "variant", "seed", "metrics"):
            if key not in rec:
                raise ArtifactError(f"metric record {source} lacks '{key}'")
        extra = {k: v for k, v in rec.items() if k not in _FIELDS and k != "_source"}
        return cls(rec["kind"], rec["dataset"], rec["tokenizer"], rec["variant"], int(rec["seed"]), rec["metrics"],
                   rec.get("notes") or {}, rec.get("labels") or {}, rec.get("not_computed") or {}, extra,
                   source=rec.get("_source", source))

    @classmethod
    def read(cls, path: str | Path) -> "MetricRecord":
        return cls.from_json(read_json(path), source=str(path))
