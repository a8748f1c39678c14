"""`--shard I/N`: split a list of input files between N independent jobs (Slurm arrays, Kubernetes
jobs, several machines), each file to exactly one job, without the jobs talking to each other.

A file's shard is a hash of its *canonical name*: its path relative to the folder (or URL prefix) it
was found under, with '/' separators; for a file given directly on the command line, its path as
given. Absolute paths are never hashed, so the same library mounted at /mnt/a on one machine and
/data/b on another splits the same way, and adding files to a folder never moves the others.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vtag.errors import VtagError


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based, as a user counts (and as Slurm's SLURM_ARRAY_TASK_ID usually runs)
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match:
        raise VtagError(f"--shard {text}: give I/N, e.g. --shard 1/4 for the first of four jobs")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 1 <= index <= count:
        raise VtagError(f"--shard {text}: I must be between 1 and N (N at least 1)")
    return Shard(index, count)


def shard_of(canonical_name: str, count: int) -> int:
    """The 1-based shard a canonical name belongs to: SHA-1 of its UTF-8 bytes, mod count. A
    cryptographic hash so that names differing in one character still spread evenly; Python's
    hash() is salted per process and would split differently on every machine. A name that is not
    UTF-8 (lone surrogates from os.fsdecode) hashes as its bytes on disk, the same on every machine."""
    digest = hashlib.sha1(canonical_name.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def select_shard(items: Sequence[str], canonical_names: Sequence[str], shard: Shard | None) -> list[str]:
    """The items (in their given order) whose canonical name falls in `shard`; all of them for None."""
    if shard is None:
        return list(items)
    if len(items) != len(canonical_names):
        raise ValueError("one canonical name per item")
    return [item for item, name in zip(items, canonical_names) if shard_of(name, shard.count) == shard.index]


def canonical_names(files: Iterable[str], roots: dict[str, str]) -> list[str]:
    """Canonical names for files found by listing: `roots` maps each file to the folder it was found
    under (files given directly map to themselves and keep their path as given)."""
    out = []
    for f in files:
        root = roots.get(f, f)
        if root == f:
            out.append(f.replace("\\", "/"))
            continue
        rel = f[len(root):] if f.startswith(root) else f
        out.append(rel.replace("\\", "/").lstrip("/"))
    return out
