"""Summaries of record files: what `vtag info` shows, and what vocabulary detection needs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vtag.io.paths import PathLike, expand_paths
from vtag.io.records import labels_of, provenance_warnings, read_audioset_records, read_records
from vtag.io.tfrecord import ReadStats, bad_record, decode_message, frame_records, Malformed, read_file
from vtag.io.yt8m_layout import KEY_ID, decode_varint_chunks, fast_video_entry, label_varint_problem


def scan_labels(paths: PathLike | Sequence[PathLike], skip_bad: bool = False) -> tuple[set[str], int | None]:
    """The id schemas ("2017"/"2018") and the largest label of the files, from the record contexts
    only (features and frames are not decoded): what vocabulary detection needs."""
    schemas: set[str] = set()
    max_label: int | None = None
    stats = ReadStats()
    packed: list[bytes] = []  # label varints of canonical records, decoded together at the end
    packed_where: list[tuple[Path, int]] = []
    for path in expand_paths(paths):
        data = read_file(path)
        for index, start, end in frame_records(data, path, skip_bad, stats):
            fast = fast_video_entry(data, start, end)
            if fast is not None:
                schemas.add("2018" if fast[0] == KEY_ID else "2017")
                if fast[2]:
                    packed.append(fast[2])
                    packed_where.append((path, index))
                continue
            try:
                context, _ = decode_message(data, start, end, context_only=True)
                labels = labels_of(context, 1 << 62)
            except Malformed as exc:
                bad_record(path, index, str(exc), skip_bad, stats)
                continue
            if "video_id" in context and "id" not in context:
                schemas.add("2017")
            elif "id" in context:
                schemas.add("2018")
            if labels is not None and labels.size:
                top = int(labels.max())
                max_label = top if max_label is None else max(max_label, top)
    values, _, ok = decode_varint_chunks(packed)
    for i in np.flatnonzero(~ok):
        bad_record(packed_where[i][0], packed_where[i][1], label_varint_problem(packed[i], 1 << 62), skip_bad, stats)
    if values.size:
        max_label = int(values.max()) if max_label is None else max(max_label, int(values.max()))
    return schemas, max_label



@dataclass
class FileInfo:
    """What `inspect_file` found in one record file."""

    path: str
    kind: str  # "video-level", "frame-level", "audioset", "mixed" or "empty"
    schema: str  # "2018 id", "2017 video_id", "audioset", "mixed" or ""
    records: int
    labelled: int  # records that carry labels
    frames: tuple[int, float, int] | None  # min, mean, max frames per record (frame-level, AudioSet)
    bad: int
    max_label: int | None
    provenance: dict[str, list[str]] = field(default_factory=dict)  # vtag_* key -> the values its records hold
    warnings: list[str] = field(default_factory=list)  # what the provenance means for labels, one line each

    def as_dict(self) -> dict:
        return {
            "path": self.path, "kind": self.kind, "schema": self.schema, "records": self.records,
            "labelled": self.labelled,
            "frames": None if self.frames is None else dict(zip(("min", "mean", "max"), self.frames)),
            "bad": self.bad, "max_label": self.max_label, "provenance": self.provenance, "warnings": self.warnings,
        }


def _peek_kind(path: Path) -> str:
    data = read_file(path)
    for _, start, end in frame_records(data, path, True, ReadStats(quiet=True)):
        try:
            _, lists = decode_message(data, start, end)
        except Malformed:
            continue
        if lists and "audio_embedding" in lists:
            return "audioset"
        return "yt8m"
    return "yt8m"


def inspect_file(path: PathLike, skip_bad: bool = False) -> FileInfo:
    """Read one record file fully (every record validated) and summarise it for `vtag info`."""
    from vtag.io.remote import is_url

    path = path if is_url(path) else Path(path)
    stats = ReadStats()
    frame_counts: list[int] = []
    kinds: set[str] = set()
    schemas: set[str] = set()
    labelled = 0
    max_label: int | None = None
    provenance: dict[str, set[str]] = {}
    warnings: dict[str, None] = {}  # ordered, distinct
    if _peek_kind(path) == "audioset":
        for rec in read_audioset_records(path, skip_bad=skip_bad, stats=stats):
            kinds.add("audioset")
            schemas.add("audioset")
            frame_counts.append(len(rec.audio))
            labelled += 1
            if rec.labels.size:
                max_label = max(int(rec.labels.max()), max_label if max_label is not None else -1)
    else:
        for rec in read_records(path, skip_bad=skip_bad, stats=stats):
            kinds.add(f"{rec.level}-level")
            schemas.add("2018 id" if rec.schema == "2018" else "2017 video_id")
            if rec.level == "frame":
                frame_counts.append(len(rec.rgb))
            if rec.provenance:
                for key, value in rec.provenance.items():
                    provenance.setdefault(key, set()).add(value)
                warnings.update(dict.fromkeys(provenance_warnings(rec.provenance)))
            if rec.labels is not None:
                labelled += 1
                if rec.labels.size:
                    max_label = max(int(rec.labels.max()), max_label if max_label is not None else -1)
    if frame_counts and len(frame_counts) != stats.records:
        frames = None  # mixed levels: a frame summary would describe only part of the file
    elif frame_counts:
        frames = (min(frame_counts), sum(frame_counts) / len(frame_counts), max(frame_counts))
    else:
        frames = None
    kind = kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "empty")
    schema = schemas.pop() if len(schemas) == 1 else ("mixed" if schemas else "")
    return FileInfo(str(path), kind, schema, stats.records, labelled, frames, stats.skipped, max_label,
                    {key: sorted(values) for key, values in provenance.items()}, list(warnings))

