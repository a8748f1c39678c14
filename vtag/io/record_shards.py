"""`vtag extract --records-per-shard N`: features written as YT8M is distributed, many record files
of N videos each, plus a manifest of which video went to which file.

Names: OUT `features.tfrecord` gives `features-00000.tfrecord`, `features-00001.tfrecord`, ... and
`features.manifest.jsonl`. YT8M's own `-of-NNNNN` suffix needs the shard count up front, which a
resumable run adding files cannot know, so shards are numbered in the order written instead.

Each shard is written atomically (whole, under a temporary name, then renamed) and only then gets
its manifest line (one fsynced write, like `vtag batch`'s results). The manifest is the state: a
rerun skips every video it lists and numbers new shards after the last one it lists, so a video is
never written twice; a shard a crash left without its line is overwritten by the next one.
A shard's records are held in memory until it is written (a frame-level video is ~350 kB).
"""

from __future__ import annotations

import json
from pathlib import Path

from vtag.errors import VtagError


class ShardedRecordWriter:
    def __init__(self, output: str | Path, records_per_shard: int, level: str):
        if records_per_shard < 1:
            raise VtagError(f"--records-per-shard {records_per_shard}: give at least 1")
        self.output = Path(output)
        self.suffix = self.output.suffix or ".tfrecord"
        self.stem = self.output.name[: -len(self.output.suffix)] if self.output.suffix else self.output.name
        self.manifest = self.output.with_name(f"{self.stem}.manifest.jsonl")
        self.records_per_shard = records_per_shard
        self.level = level
        self.done: set[str] = set()
        self.next_shard = 0
        self.written: list[Path] = []
        self._pending: list[tuple[str, object]] = []
        self._read_manifest()

    def shard_path(self, number: int) -> Path:
        return self.output.with_name(f"{self.stem}-{number:05d}{self.suffix}")

    def _read_manifest(self) -> None:
        if not self.manifest.exists():
            return
        data = self.manifest.read_bytes()
        cut = data.rfind(b"\n") + 1
        if cut != len(data):  # a kill mid-append: the torn line's shard is rewritten by this run
            with open(self.manifest, "r+b") as f:
                f.truncate(cut)
        for line in data[:cut].decode("utf-8").splitlines():
            try:
                entry = json.loads(line)
                self.done.update(video["path"] for video in entry["videos"])
                self.next_shard = max(self.next_shard, int(entry["number"]) + 1)
            except (KeyError, TypeError, ValueError):
                raise VtagError(f"{self.manifest}: not a vtag extract manifest (line {line[:60]!r})") from None

    def add(self, path: str, features) -> None:
        self._pending.append((path, features))
        if len(self._pending) >= self.records_per_shard:
            self.flush()

    def flush(self) -> None:
        from vtag.io.records import write_records

        if not self._pending:
            return
        target = self.shard_path(self.next_shard)
        write_records(target, (features.to_record(self.level) for _, features in self._pending), level=self.level)
        entry = {"number": self.next_shard, "shard": target.name, "level": self.level,
                 "videos": [{"id": features.id, "path": path} for path, features in self._pending]}
        _append(self.manifest, json.dumps(entry, ensure_ascii=False, allow_nan=False) + "\n")  # ids, names, numbers
        self.done.update(path for path, _ in self._pending)
        self.written.append(target)
        self.next_shard += 1
        self._pending = []


def _append(path: Path, line: str) -> None:
    """One write call per line, fsynced (as `vtag batch`'s results): a kill leaves a whole line or
    a torn tail that the next run cuts off."""
    import os

    data = line.encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if os.write(fd, data) != len(data):
            raise VtagError(f"{path}: short write: disk full?")
        os.fsync(fd)
    finally:
        os.close(fd)
