"""Write large annotation files one record at a time, in memory bounded by one record.

A dataset writer (the embedded generator at 100,000 images, a `data prepare` step) produces COCO
files whose `images` and `annotations` arrays grow together, item by item. Holding them as Python
lists until the end costs ~12 KB per image (1.2 GB at 100k); instead each item is serialized when
it is made, into a spool file on disk, and the final file is assembled from the spools by
streaming copy. Readers see ordinary JSON / pickle files, written atomically under their names.

    with tempfile.TemporaryDirectory(dir=out) as tmp:
        images, anns = JsonSpool(tmp, "array"), JsonSpool(tmp, "array")
        ...  images.append({...}); anns.append({...})
        write_json_members(out / "captions.json", {"info": {...}, "images": images, "annotations": anns})

Member order is sorted (as `lgvq.io.atomic_write_json` writes) and the parsed content equals what
`json.dumps` of the same Python objects gives; only the whitespace differs (one item per line).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Literal

from lgvq.io import atomic_path

_COPY_CHUNK = 1 << 20


def _dumps(obj: Any) -> str:
    from lgvq.io import json_default

    return json.dumps(obj, sort_keys=True, default=json_default)


class JsonSpool:
    """One JSON array (`append`) or object (`put`) filled one item at a time in a file on disk."""

    def __init__(self, directory: str | os.PathLike, kind: Literal["array", "object"]) -> None:
        if kind not in ("array", "object"):
            raise ValueError(f"JsonSpool kind must be 'array' or 'object', got {kind!r}")
        self.kind = kind
        fd, name = tempfile.mkstemp(dir=directory, prefix=f".{kind}-", suffix=".jsonl")
        self.path = Path(name)
        self._fh: IO[str] = os.fdopen(fd, "w", encoding="utf-8")
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def append(self, item: Any) -> None:
        if self.kind != "array":
            raise TypeError("append() is for array spools; use put(key, value) on an object spool")
        self._write(_dumps(item))

    def put(self, key: str, value: Any) -> None:
        if self.kind != "object":
            raise TypeError("put() is for object spools; use append(item) on an array spool")
        if not isinstance(key, str):
            raise TypeError(f"JSON object keys are strings, got {type(key).__name__} {key!r}")
        self._write(f"{json.dumps(key)}: {_dumps(value)}")

    def _write(self, line: str) -> None:
        self._fh.write(("\n" if self._count == 0 else ",\n") + line)
        self._count += 1

    def copy_to(self, out: IO[str]) -> None:
        """Write the container (brackets included) to `out`; the spool stays readable for another copy."""
        self._fh.flush()
        out.write("[" if self.kind == "array" else "{")
        with self.path.open(encoding="utf-8") as src:
            shutil.copyfileobj(src, out, _COPY_CHUNK)
        out.write(("\n" if self._count else "") + ("]" if self.kind == "array" else "}"))

    def close(self) -> None:
        self._fh.close()


def write_json_members(path: str | os.PathLike, members: dict[str, Any] | JsonSpool) -> None:
    """Write a JSON object atomically: plain members are serialized as they are, `JsonSpool`
    members are streamed from disk. A `JsonSpool` given alone becomes the whole file."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as out:
        if isinstance(members, JsonSpool):
            members.copy_to(out)
        else:
            out.write("{")
            for k, key in enumerate(sorted(members)):
                out.write(("\n" if k == 0 else ",\n") + json.dumps(key) + ": ")
                value = members[key]
                if isinstance(value, JsonSpool):
                    value.copy_to(out)
                else:
                    out.write(_dumps(value))
            out.write("\n}" if members else "}")
        out.write("\n")


class PickleListSpool:
    """A pickled Python list (protocol 2, as RefCOCO's `refs(*).p` files are) filled item by item
    on disk; `write_pickled_list` puts it under its name.

    The bytes are the opcode stream `pickle.dumps` would give for the list, except that the memo
    indices restart with each item: items are pickled one by one, so object sharing *across*
    items is not preserved (refs are plain trees of dicts, lists and scalars; none is shared).
    `pickle.load` and `lgvq.data.formats.read_refs` read the file as the whole list.
    """

    _BATCH = 1000  # items per MARK ... APPENDS group, as the C pickler batches lists

    def __init__(self, directory: str | os.PathLike) -> None:
        fd, name = tempfile.mkstemp(dir=directory, prefix=".list-", suffix=".pkl")
        self.path = Path(name)
        self._fh: IO[bytes] = os.fdopen(fd, "wb")
        self._in_batch = 0
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def append(self, item: Any) -> None:
        if self._in_batch == 0:
            self._fh.write(pickle.MARK)
        self._fh.write(pickle.dumps(item, protocol=2)[2:-1])  # the item's opcodes without PROTO 2 and STOP
        self._in_batch += 1
        self._count += 1
        if self._in_batch == self._BATCH:
            self._fh.write(pickle.APPENDS)
            self._in_batch = 0

    def copy_to(self, out: IO[bytes]) -> None:
        """Write the whole pickle to `out`: PROTO 2, EMPTY_LIST, the items (the open batch closed), STOP."""
        if self._in_batch:
            self._fh.write(pickle.APPENDS)
            self._in_batch = 0
        self._fh.flush()
        out.write(pickle.PROTO + bytes([2]) + pickle.EMPTY_LIST)
        with self.path.open("rb") as src:
            shutil.copyfileobj(src, out, _COPY_CHUNK)
        out.write(pickle.STOP)

    def close(self) -> None:
        self._fh.close()


def write_pickled_list(path: str | os.PathLike, spool: PickleListSpool) -> None:
    """The spooled list as a pickle file, written atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        spool.copy_to(out)
