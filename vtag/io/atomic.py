"""Atomic file writes: every file vtag writes (records, weights, configs, results) appears whole or
not at all, so a crash or Ctrl-C never leaves a half-written file behind under the real name."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from vtag.errors import VtagError


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Call write(file) on a temporary file beside `path`, fsync it, then rename it over `path`."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise VtagError(f"{target}: directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        # mkstemp makes the file private (0600); give it the mode an ordinary open() would
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, chunks: str | Iterable[str]) -> None:
    parts = [chunks] if isinstance(chunks, str) else chunks
    atomic_write(path, lambda f: [f.write(part.encode("utf-8")) for part in parts])


def atomic_write_json(path: str | os.PathLike, obj: object, indent: int | None = 2) -> None:
    """`obj` as strict JSON: NaN and infinity, which Python writes but other JSON readers refuse, are a
    one-line error naming the file instead of a file nothing else can read."""
    try:
        text = json.dumps(obj, indent=indent, allow_nan=False)
    except ValueError:
        raise VtagError(f"{path}: not written: a value in it is NaN or infinity, which JSON cannot hold") from None
    atomic_write_bytes(path, (text + "\n").encode())
