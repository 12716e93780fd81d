"""CUB-200-2011 + Reed et al. captions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from lgvq.data.sources.real import (
    RealSource,
    ImageEntry,
    first_existing,
    read_caption_lines,
    read_id_table,
)
from lgvq.io import ArtifactError


class CUBSource(RealSource):
    """CUB-200-2011 with Reed et al.'s 10 captions per image.

    root = the extracted `CUB_200_2011/` folder, or a folder containing it. The captions folder
    (`text_c10/`, `text/` as AttnGAN's birds.zip names it, or `birds/text/`, the authors' loader's path:
    birds.zip unpacked as it is) is looked up in root, then in `CUB_200_2011/`: so either root holds both
    folders side by side, or root is `CUB_200_2011/` with the captions inside it. Nothing outside root is read.
    Splits: the official train_test_split.txt (1 = train); its test half is both val and test, as in the authors' code.
    Image ids are CUB's 1-based ids from images.txt.
    """

    name = "cub"

    def __init__(self, root: str | Path) -> None:
        super().__init__(root)
        self.cub_dir = first_existing([self.root / "images.txt", self.root / "CUB_200_2011" / "images.txt"],
                                       "CUB-200-2011 images.txt").parent
        self.text_dir = first_existing(
            [d / n for d in (self.root, self.cub_dir) for n in ("text_c10", "text", "birds/text")],
            "Reed et al. captions folder (text_c10/, text/ or birds/text/)")

    def _entries(self, key: str) -> Iterator[ImageEntry]:
        split_file = self.cub_dir / "train_test_split.txt"
        flags = read_id_table(split_file)
        want = "1" if key == "train" else "0"
        for iid, rel in read_id_table(self.cub_dir / "images.txt").items():
            if iid not in flags:
                raise ArtifactError(f"{split_file}: no train/test flag for image {iid} ({rel})")
            if flags[iid] != want:
                continue
            cap = self.text_dir / Path(rel).with_suffix(".txt")
            yield ImageEntry(iid, self.cub_dir / "images" / rel, read_caption_lines(cap), cap)

    def bounding_boxes(self) -> dict[int, tuple[float, float, float, float]]:
        """{image id: (x, y, width, height)} in pixels, from the optional bounding_boxes.txt."""
        path = self.cub_dir / "bounding_boxes.txt"
        out = {}
        for iid, value in read_id_table(path).items():
            try:
                x, y, w, h = (float(v) for v in value.split())
            except ValueError as e:
                raise ArtifactError(f"{path}: image {iid} has no 'x y width height' box: {value!r}") from e
            out[iid] = (x, y, w, h)
        return out
