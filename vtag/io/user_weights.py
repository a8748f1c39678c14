"""A user's own (e.g. fine-tuned) feature-extractor weights, installed with
`vtag weights import --unverified`: kept apart from the official files, listed as unverified.

Each role (`vggish`, `vggish_pca`) holds at most one file, `<cache>/unverified/<role><suffix>`, with a
JSON note beside it (`<role>.json`: the format, where it came from, its sha256). The official files
keep their own names and checks and stay verified; a role's user file, while installed, is what
vtag loads for that role (with a warning each time), and `vtag weights forget ROLE` removes it.
Which role a file takes is decided by the caller from its format and shapes (`vtag.features.vggish_weights`).
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

from vtag.errors import VtagError
from vtag.io.atomic import atomic_write_json
from vtag.weights import WeightStatus, _install_file, cache_dir, sha256_file

log = logging.getLogger("vtag.user_weights")
ROLES = ("vggish", "vggish_pca")
UNVERIFIED_DIR = "unverified"


def _folder() -> Path:
    return cache_dir() / UNVERIFIED_DIR


def _note(role: str) -> Path:
    return _folder() / f"{role}.json"


def _read_note(role: str) -> dict | None:
    try:
        note = json.loads(_note(role).read_text())
    except (OSError, ValueError):
        return None
    return note if isinstance(note, dict) and isinstance(note.get("file"), str) else None


def unverified_path(role: str) -> Path | None:
    """The user's file installed for `role`, if any (and still there)."""
    note = _read_note(role)
    if note is None:
        return None
    path = _folder() / Path(note["file"]).name
    return path if path.is_file() else None


def user_file_in_use(role: str) -> Path | None:
    """`unverified_path` for a loader: logs a warning that unverified weights are being used."""
    path = unverified_path(role)
    if path is not None:
        log.warning("%s: using unverified weights %s (imported with `vtag weights import --unverified`; "
                    "undo: `vtag weights forget %s`)", role, path, role)
    return path


def install_unverified(source: Path, role: str, suffix: str, description: str) -> Path:
    """Copy a user's file into the unverified slot of `role` (replacing an earlier one), atomically."""
    if role not in ROLES:
        raise VtagError(f"unknown weights role {role!r}; roles: {', '.join(ROLES)}")
    target = _folder() / f"{role}{suffix}"
    for old in _folder().glob(f"{role}.*") if _folder().is_dir() else ():
        if old != target and old.suffix != ".json" and old.name != target.name:
            old.unlink(missing_ok=True)
    _install_file(source, target, move=False)
    note = {"role": role, "file": target.name, "description": description, "source": str(source.resolve()),
            "sha256": sha256_file(target)}
    atomic_write_json(_note(role), note, indent=1)
    return target


def forget_unverified(role: str) -> Path | None:
    """Remove the user's file for `role`; vtag goes back to the official weights. Returns what was removed."""
    if role not in ROLES:
        raise VtagError(f"unknown weights role {role!r}; roles: {', '.join(ROLES)}")
    path = unverified_path(role)
    _note(role).unlink(missing_ok=True)
    if path is not None:
        path.unlink(missing_ok=True)
    return path


def unverified_status() -> list[WeightStatus]:
    """One row per installed user file: present, never verified, `detail` saying what it is."""
    rows = []
    for role in ROLES:
        path = unverified_path(role)
        if path is None:
            continue
        note = _read_note(role) or {}
        changed = "" if note.get("sha256") == sha256_file(path) else ", changed since import"
        detail = f"unverified {note.get('description', role)}, from {note.get('source', '?')}{changed}"
        row = WeightStatus(f"{role} (user's own)", True, False, path, detail)
        row.unverified = True
        rows.append(row)
    return rows


def unverified_marks() -> list[str]:
    """What a record of features made now must say about the user's own files in use, one entry per
    role ("vggish unverified sha256:<16 hex>"), so it never passes for one made with the official
    weights; empty when none is installed. The digest is of the file as it is now."""
    marks = []
    for role in ROLES:
        path = unverified_path(role)
        if path is not None:
            st = path.stat()
            marks.append(f"{role} unverified sha256:{_file_digest(str(path), st.st_mtime_ns, st.st_size)[:16]}")
    return marks


@functools.lru_cache(maxsize=8)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    # keyed on mtime and size as well: a file replaced in place is hashed again, an unchanged one once
    return sha256_file(Path(path))
