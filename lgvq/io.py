"""Atomic artifact writing.

Every file the harness writes goes through these helpers: the bytes land in a temporary
file in the destination directory and are renamed into place only when complete, so an
interrupted job leaves either the previous file or nothing — never a truncated artifact
that a later stage would silently accept.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


class ArtifactError(RuntimeError):
    """An artifact could not be written or read; the message names the path."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds.

    `fsync=False` keeps the rename (no partial file is ever visible under the name) but leaves the
    flush to the caller: a writer of many small files syncs once at the end (lgvq.data.synth).

    Use for writers that want a file name (np.save, torch.save, PIL, matplotlib).
    The temporary name is hidden (leading dot) and keeps the destination's suffix, so
    format-by-extension writers (np.save appends ".npy" otherwise, PIL picks the format)
    behave as they would on the real name.
    """
    dest = Path(path)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=dest.parent, prefix=f".{dest.name}.tmp-", suffix=dest.suffix if suffix is None else suffix
        )
    except OSError as e:
        raise ArtifactError(f"cannot write {dest}: {e.strerror or e}") from e
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if fsync:
            with open(tmp_path, "rb+") as fh:
                os.fsync(fh.fileno())
        # mkstemp creates the file 0600; give it the mode a plain open() would (0666 & ~umask),
        # so results are readable by the group/others as the user's umask intends.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, dest)
    except OSError as e:
        tmp_path.unlink(missing_ok=True)
        raise ArtifactError(f"cannot write {dest}: {e.strerror or e}") from e
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, fsync: bool = True) -> None:
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    """torch.save through an open file, atomically. Given a file *name*, torch names the archive's
    root folder after it (here: the random temporary name), so two saves of equal tensors would
    differ in bytes; through a file object the folder is always `archive/`: the bytes depend only
    on the content (a resumed run's model.pt is byte-identical to an uninterrupted one's)."""
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    p = Path(path)
    if not p.is_file():
        raise ArtifactError(f"missing file: {p}")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"corrupt JSON in {p}: {e}") from e


def json_default(o: Any) -> Any:
    # numpy scalars / arrays and paths show up in metric dicts; keep JSON writing total.
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def load_torch_file(path: str | os.PathLike, *, key: str | None = None) -> Any:
    """`torch.load(path, weights_only=True)` on the CPU with errors a user can act on, naming the
    config `key` the path came from when there is one. Torch's own message for a file that is not
    a checkpoint ends with advice to retry with `weights_only=False`, which would execute code
    from the file: never what to do with a file named in a config."""
    import torch

    p = Path(path)
    where = f"{key}: " if key else ""
    if not p.is_file():
        raise ArtifactError(f"{where}file not found: {p}")
    with open(p, "rb") as fh:
        head = fh.read(4)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # torch's zip format, or a legacy pickle
        raise ArtifactError(f"{where}{p} is not a PyTorch checkpoint (neither torch's zip format nor a pickle; "
                            f"starts with {head!r})")
    try:
        # argparse.Namespace only holds attributes: LlamaGen's checkpoints carry their `args`
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated archive, or objects other than tensors and containers
        detail = str(e).split("\n")[0][:300]
        raise ArtifactError(f"{where}cannot read the PyTorch checkpoint {p} ({type(e).__name__}: {detail}); "
                            "only tensors and plain containers are loaded") from e
