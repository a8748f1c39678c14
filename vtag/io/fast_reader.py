"""The fast batched reader for video-level shards: all records of a set of files as arrays.

What training and evaluation read. Records in TensorFlow's canonical layout (`vtag.io.yt8m_layout`)
have their floats copied straight into preallocated arrays; any other layout goes through the general
decoder, so every record gets the same validation as with `vtag.io.records.read_records`.
"""

from __future__ import annotations

import bisect
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vtag.errors import VtagError
from vtag.io.paths import PathLike, expand_paths
from vtag.io.records import AUDIO_DIM, MAX_NUM_CLASSES, RGB_DIM, FEATURE_LIMIT, record_where, value_problem, yt8m_record
from vtag.io.tfrecord import Malformed, ReadStats, bad_record, decode_message, frame_records, read_file
from vtag.io.yt8m_layout import (
    AUDIO_BYTES, KEY_ID, KEY_VIDEO_ID, MIN_RECORD_BYTES, RGB_BYTES, decode_varint_chunks, fast_video_entry,
    label_varint_problem,
)

log = logging.getLogger("vtag.io.fast_reader")


@dataclass
class VideoLevelArrays:
    """Video-level records of a set of files, as arrays. `labels[i]` is None for unlabelled records;
    `schema[i]` is "2018" (key `id`) or "2017" (key `video_id`)."""

    ids: list[str]
    labels: list[np.ndarray | None]
    rgb: np.ndarray  # float32 [N, 1024]
    audio: np.ndarray  # float32 [N, 128]
    schema: list[str] = field(default_factory=list)
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.ids)

    def multi_hot(self, num_classes: int) -> np.ndarray:
        """float32 [N, num_classes] targets (all-zero rows for unlabelled records)."""
        out = np.zeros((len(self.ids), num_classes), dtype=np.float32)
        sizes = np.fromiter((0 if x is None else x.size for x in self.labels), dtype=np.int64, count=len(self.labels))
        if sizes.sum():
            values = np.concatenate([x for x in self.labels if x is not None and x.size])
            if values.min() < 0 or values.max() >= num_classes:
                raise VtagError(f"labels run up to {int(values.max())}, beyond num_classes={num_classes}")
            out[np.repeat(np.arange(len(self.ids)), sizes), values] = 1.0
        return out


def _value_problems(rgb: np.ndarray, audio: np.ndarray, first: int, problems: dict[int, str]) -> None:
    """Rows `first`.. holding NaN, infinity or absurd magnitudes -> what is wrong, into `problems`. Run
    per file, while its rows are still in cache: min and max over them (they propagate NaN), and a look
    at single rows only when that finds something."""
    for name, values in (("mean_rgb", rgb), ("mean_audio", audio)):
        if value_problem(values, name) is None:
            continue
        for i in np.flatnonzero(~(np.abs(values) <= FEATURE_LIMIT).all(axis=1)).tolist():
            problems.setdefault(first + i, value_problem(values[i], name))


def _video_file(data: bytes, path: Path, skip_bad: bool, stats: ReadStats, out: dict) -> None:
    """Append every good video-level record of one file to `out` (see read_video_level_arrays)."""
    src = memoryview(data)
    rgb_mv, audio_mv = out["rgb_mv"], out["audio_mv"]
    ids, raw_labels, keys, rec_index = out["ids"], out["raw_labels"], out["keys"], out["rec_index"]
    n = out["n"]
    capacity = out["capacity"]
    try:
        for index, start, end in frame_records(data, path, skip_bad, stats):
            if n >= capacity:  # only records smaller than any valid one get here
                bad_record(path, index, "record too small to be a video-level record", skip_bad, stats)
                continue
            parsed = fast_video_entry(data, start, end)
            if parsed is not None:
                key, vid, labels, rgb_at, audio_at = parsed
                rgb_mv[n * RGB_BYTES:(n + 1) * RGB_BYTES] = src[rgb_at:rgb_at + RGB_BYTES]
                audio_mv[n * AUDIO_BYTES:(n + 1) * AUDIO_BYTES] = src[audio_at:audio_at + AUDIO_BYTES]
            else:
                try:
                    features, lists = decode_message(data, start, end)
                    if lists and ("rgb" in lists or "audio_embedding" in lists) and "mean_rgb" not in features:
                        # the wrong reader, not a bad record: never skipped
                        raise VtagError(f"{path}: record {index} is a frame-level record without video-level "
                                        "means; read frame-level files with read_records and pool_frames")
                    record = yt8m_record(features, None, out["limit"])
                except Malformed as exc:
                    bad_record(path, index, str(exc), skip_bad, stats)
                    continue
                vid = record.id.encode("utf-8")
                key = KEY_ID if record.schema == "2018" else KEY_VIDEO_ID
                labels = record.labels
                out["rgb"][n] = record.rgb
                out["audio"][n] = record.audio
            ids.append(vid)
            raw_labels.append(labels)
            keys.append(key)
            rec_index.append(index)
            n += 1
    finally:
        out["n"] = n
        del src


def read_video_level_arrays(
    paths: PathLike | Sequence[PathLike],
    skip_bad: bool = False,
    num_classes: int | None = None,
    stats: ReadStats | None = None,
) -> VideoLevelArrays:
    """All video-level records of the files as arrays: the fast path for training and evaluation.

    Whole files are read at once and CRCs checked in C; records laid out as TF writes them are parsed
    with a few prefix matches and their floats copied straight into preallocated arrays, labels are
    decoded for all records at once with numpy. Any other layout goes through the general decoder, so
    every record gets the same validation as with `read_records`.
    """
    files = expand_paths(paths)
    limit = num_classes or MAX_NUM_CLASSES
    local = stats if stats is not None else ReadStats()
    capacity = max(1, sum(os.path.getsize(p) for p in files) // MIN_RECORD_BYTES + 1)
    rgb = np.empty((capacity, RGB_DIM), dtype=np.float32)
    audio = np.empty((capacity, AUDIO_DIM), dtype=np.float32)
    out = {"rgb": rgb, "audio": audio, "rgb_mv": memoryview(rgb).cast("B"), "audio_mv": memoryview(audio).cast("B"),
           "ids": [], "raw_labels": [], "keys": [], "rec_index": [], "n": 0, "capacity": capacity,
           "limit": limit}
    file_starts: list[int] = []  # record number at which each file starts, to name files in errors
    out_of_range: dict[int, str] = {}
    try:
        for path in files:
            file_starts.append(out["n"])
            skipped_before = local.skipped
            local.files += 1
            _video_file(read_file(path), path, skip_bad, local, out)
            _value_problems(rgb[file_starts[-1]:out["n"]], audio[file_starts[-1]:out["n"]], file_starts[-1],
                            out_of_range)
            if local.skipped > skipped_before:
                log.warning("%s: skipped %d bad records", path, local.skipped - skipped_before)
    finally:
        out["rgb_mv"].release()
        out["audio_mv"].release()
    n = out["n"]
    ids_raw, raw_labels, keys, rec_index = out["ids"], out["raw_labels"], out["keys"], out["rec_index"]

    # labels: decode the packed varints of all records in one go, then check them in one go
    packed = [x for x in raw_labels if isinstance(x, bytes)]
    values, value_start, ok = decode_varint_chunks(packed)
    value_end = np.append(value_start[1:], len(values)) if len(packed) else value_start
    bounds = zip(value_start.tolist(), value_end.tolist())
    bad: dict[int, str] = {}
    if len(packed) == n:  # the usual case: every record canonical and labelled
        labels: list[np.ndarray | None] = [values[a:b] for a, b in bounds]
    else:
        labels = [values[slice(*next(bounds))] if isinstance(x, bytes) else x for x in raw_labels]
    if not ok.all():
        packed_at = [i for i, x in enumerate(raw_labels) if isinstance(x, bytes)]
        for j in np.flatnonzero(~ok):
            bad[packed_at[j]] = label_varint_problem(packed[j], limit)
    if values.size and values.max() >= limit:  # varints here are unsigned; negatives are not ok above
        for i, x in enumerate(labels):
            if x is not None and x.size and x.max() >= limit and i not in bad:
                wrong = x[(x >= limit) | (x < 0)][0]
                bad[i] = f"label {int(wrong)} outside the vocabulary (0..{limit - 1})"
    try:
        id_text = [x.decode("utf-8") for x in ids_raw]
    except UnicodeDecodeError:
        id_text = []
        for i, x in enumerate(ids_raw):
            try:
                id_text.append(x.decode("utf-8"))
            except UnicodeDecodeError:
                id_text.append("")
                bad.setdefault(i, f"video id is not UTF-8: {x[:40]!r}")
    for i, problem in out_of_range.items():
        bad.setdefault(i, problem)
    keep = None
    if bad:
        for i in sorted(bad):
            where = record_where(rec_index[i], id_text[i]) if out_of_range.get(i) == bad[i] else rec_index[i]
            bad_record(files[bisect.bisect_right(file_starts, i) - 1], where, bad[i], skip_bad, local)
        keep = np.array([i not in bad for i in range(n)])
    schema = ["2018" if k == KEY_ID else "2017" for k in keys]
    rgb, audio = rgb[:n], audio[:n]
    if keep is not None:
        rgb, audio = rgb[keep], audio[keep]
        id_text = [x for x, k in zip(id_text, keep) if k]
        labels = [x for x, k in zip(labels, keep) if k]
        schema = [x for x, k in zip(schema, keep) if k]
    local.records += len(id_text)
    return VideoLevelArrays(id_text, labels, rgb, audio, schema, local.skipped)

