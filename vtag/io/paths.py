"""Where vtag's inputs are: record files given as files, globs or folders; the repository's weights/ folder."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

from vtag.errors import VtagError
from vtag.io.tfrecord import PathLike

TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords")
# The vocabularies and the default model: an installed wheel carries them as vtag/_weights (setup.py
# copies them there); a source checkout (pip install -e .) keeps them in weights/ beside the package.
_PACKAGED_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "_weights"
_CHECKOUT_WEIGHTS_DIR = Path(__file__).resolve().parent.parent.parent / "weights"
REPO_WEIGHTS_DIR = _PACKAGED_WEIGHTS_DIR if _PACKAGED_WEIGHTS_DIR.is_dir() else _CHECKOUT_WEIGHTS_DIR


def expand_paths(paths: PathLike | Sequence[PathLike]) -> list[Path]:
    """Files, globs and directories (every *.tfrecord / *.tfrecords file below them, sorted) -> a list
    of files in the order given, without duplicates. URLs (vtag.io.remote) come back as str."""
    from vtag.io.remote import expand_url, is_url

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[Path] = []
    for raw in paths:
        text = os.fspath(raw)
        if is_url(text):  # stays a str: Path() would fold https:// into https:/
            found.extend(expand_url(text, TFRECORD_SUFFIXES))
            continue
        path = Path(text).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(TFRECORD_SUFFIXES))
            if not files:
                raise VtagError(f"{path}: directory holds no *.tfrecord files; pass the record files or a glob")
            found.extend(files)
        elif path.is_file():
            found.append(path)
        elif glob.has_magic(text):
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(text), recursive=True))
            files = [m for m in matches if m.is_file()]
            if not files:
                raise VtagError(f"{text}: pattern matches no files")
            found.extend(files)
        else:
            raise VtagError(f"{text}: no such file or directory")
    unique: dict[str, Path] = {}
    for p in found:
        unique.setdefault(p if is_url(p) else os.path.abspath(p), p)
    return list(unique.values())

