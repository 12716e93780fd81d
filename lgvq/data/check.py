"""`lgvq data check`: everything wrong with a dataset root, in one report, before GPU hours are spent.

Unlike `records()`, which stops at the first problem, the check lists every missing file, every
image without captions and every image PIL cannot fully decode (decoding, not just opening:
a truncated JPEG opens fine and fails only when its pixels are read).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from lgvq.io import ArtifactError

MAX_LISTED = 20  # per kind and split; the counts are always complete


@dataclass
class SplitReport:
    split: str
    images: int = 0
    captions: int = 0
    captions_dropped: int | None = None  # by the 30-token filter (None: the source does not filter)
    images_dropped: int | None = None  # every caption over the limit
    questions: int | None = None
    expressions: int | None = None
    missing: list[str] = field(default_factory=list)
    no_captions: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the split could not be listed at all
    same_as: str | None = None  # an alias (val = test): its problems are listed under that split only

    @property
    def ok(self) -> bool:
        return not (self.missing or self.no_captions or self.unreadable or self.errors)


@dataclass
class CheckReport:
    name: str
    root: str
    splits: list[SplitReport] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the source could not be opened

    @property
    def ok(self) -> bool:
        return not self.errors and all(s.ok for s in self.splits)

    def format(self) -> str:
        lines = [f"dataset '{self.name}' at {self.root}"]
        lines += [f"  error: {e}" for e in self.errors]
        for s in self.splits:
            row = f"  {s.split}: {s.images} images, {s.captions} captions"
            if s.errors and not s.images and not s.captions:  # its records could not be listed: not "0 images"
                row = f"  {s.split}: could not be read"
            if s.same_as:
                lines.append(row + f" (the same files as '{s.same_as}')")
                continue
            if s.captions_dropped is not None:
                row += f" ({s.captions_dropped} over 30 tokens dropped, {s.images_dropped} images left without any)"
            if s.questions is not None:
                row += f", {s.questions} questions"
            if s.expressions is not None:
                row += f", {s.expressions} referring expressions"
            lines.append(row)
            for label, items in (("error", s.errors), ("missing", s.missing), ("no captions", s.no_captions),
                                 ("unreadable", s.unreadable)):
                lines += [f"    {label}: {x}" for x in items[:MAX_LISTED]]
                if len(items) > MAX_LISTED:
                    lines.append(f"    ... and {len(items) - MAX_LISTED} more {label}")
        totals = {k: sum(len(getattr(s, k)) for s in self.splits)
                  for k in ("missing", "no_captions", "unreadable", "errors")}
        if self.ok:
            lines.append("OK: no missing files, unreadable images or images without captions")
        else:
            # Only what was found, each under the label of the lines above it (an annotation file that cannot
            # be read makes its split unreadable: an error, not a "missing file" of the split).
            counts = ((totals["missing"], "missing file(s)"), (totals["unreadable"], "unreadable image(s)"),
                      (totals["no_captions"], "image(s) without captions"),
                      (totals["errors"] + len(self.errors), "error(s) reading the annotations or the root"))
            lines.append("FAILED: " + ", ".join(f"{n} {label}" for n, label in counts if n))
        return "\n".join(lines)


def _decode_problem(path: Path, label_map: bool) -> str | None:
    """None if PIL verifies and fully decodes the file, else '<path>: <why>'."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()  # structure (PNG CRCs); cannot see a truncated JPEG
        with Image.open(path) as im:  # verify() leaves the image unusable: reopen to decode
            im.load()
            if label_map and im.mode not in ("L", "P"):
                return f"{path}: label map has mode {im.mode}; expected a single-channel PNG"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        return f"{path}: {e}"
    return None


def check_dataset(name: str, root: str | Path, splits: list[str] | None = None, *, verify_images: bool = True,
                  workers: int | None = None, cache_dir: str | Path | None = None) -> CheckReport:
    from lgvq.data.registry import get_source

    report = CheckReport(name, str(root))
    try:
        source = get_source(name, root, cache_dir=cache_dir)
        wanted = splits or source.splits()
        for s in wanted:
            if s not in source.splits():
                raise ArtifactError(f"unknown split '{s}' (splits: {', '.join(source.splits())})")
    except ArtifactError as e:
        report.errors.append(str(e))
        return report
    seen: set[Path] = set()  # splits may share files: decode each once
    scans: dict[int, str] = {}  # id(scan) -> first split that used it (aliases share one scan)
    with ThreadPoolExecutor(workers or min(16, os.cpu_count() or 1)) as pool:  # PIL decodes without the GIL
        for split in wanted:
            rep = SplitReport(split)
            report.splits.append(rep)
            try:
                if hasattr(source, "scan"):
                    scan = source.scan(split)
                    records = scan.records
                    if id(scan) in scans:
                        rep.same_as = scans[id(scan)]
                        rep.images, rep.captions = len(records), sum(len(r.captions) for r in records)
                        continue
                    scans[id(scan)] = split
                    rep.captions_dropped = scan.caption_filter.captions_dropped
                    rep.images_dropped = scan.caption_filter.images_dropped
                    for p in scan.problems:
                        {"missing": rep.missing, "no_captions": rep.no_captions}.get(p.kind, rep.unreadable).append(
                            p.message())
                else:
                    records = source.records(split)
            except ArtifactError as e:
                rep.errors.append(str(e))
                continue
            rep.images, rep.captions = len(records), sum(len(r.captions) for r in records)
            for attr, method in (("questions", "qa"), ("expressions", "refs")):
                if not getattr(source, f"has_{method}")():
                    continue  # this dataset has none
                try:
                    setattr(rep, attr, len(getattr(source, method)(split)))
                except ArtifactError as e:
                    rep.errors.append(str(e))
            if not verify_images:
                continue
            todo = [(r.path, False) for r in records if r.path.is_file()]  # absent ones are already "missing"
            todo += [(r.mask_path, True) for r in records if r.mask_path is not None]
            todo = [(p, m) for p, m in todo if p not in seen]
            seen.update(p for p, _ in todo)
            rep.unreadable += [msg for msg in pool.map(lambda t: _decode_problem(*t), todo) if msg]
    return report
