"""YouTube-8M record files: the YT8M schemas on top of `vtag.tfrecord`'s framing and codec.

- `read_records` yields `YT8MRecord`s (video-level `mean_rgb`/`mean_audio`, or frame-level `rgb`/`audio`
  dequantized), for both id schemas (2018 `id`, 2017 `video_id`);
- `read_video_level_arrays` is the fast batched reader for video-level shards (records laid out as
  TensorFlow writes them are matched by their exact header bytes; anything else takes the general
  decoder);
- `write_records` writes either level; `pool_frames` turns frames into model inputs;
- `read_audioset_records` reads AudioSet release files (`audio_embedding` feature lists);
- `inspect_file` / `scan_labels` summarise files for `vtag info` and vocabulary detection.

A bad record (truncated file, CRC mismatch, missing feature, wrong length, label out of range) raises
one `VtagError` naming the file and record index; with `skip_bad=True` it is skipped and counted in a
`ReadStats` instead. No value is ever silently wrong.
"""

from __future__ import annotations

import bisect
import glob
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import google_crc32c
import numpy as np

from vtag.errors import VtagError

from vtag.tfrecord import (
    _HEADER,
    _LENGTH_CRC_PROBLEM,
    _MASK_DELTA,
    _U32,
    PathLike,
    ReadStats,
    _bad,
    _decode_message,
    _frame,
    _Malformed,
    _packed_varints,
    _put_len,
    _put_varint,
    _read_file,
    encode_example,
    encode_sequence_example,
    masked_crc32c,
    write_tfrecord,
)

log = logging.getLogger("vtag.records")

RGB_DIM = 1024
AUDIO_DIM = 128
# The largest YT8M vocabulary (2017). A label at or above it is outside every vocabulary; readers that
# know the vocabulary in use pass its size as `num_classes` for the exact check.
MAX_NUM_CLASSES = 4716
INPUT_SPECS = {"mean": (RGB_DIM, AUDIO_DIM), "mean+std": (2 * RGB_DIM, 2 * AUDIO_DIM)}
TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords")


# ---------------------------------------------------------------------------------------------------
# paths


def expand_paths(paths: PathLike | Sequence[PathLike]) -> list[Path]:
    """Files, globs and directories (every *.tfrecord / *.tfrecords file below them, sorted) -> a list
    of files in the order given, without duplicates."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[Path] = []
    for raw in paths:
        text = os.fspath(raw)
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
        unique.setdefault(os.path.abspath(p), p)
    return list(unique.values())


# ---------------------------------------------------------------------------------------------------
# quantization (the starter code's Dequantize; the extractor's 8-bit quantization)

_DQ_SCALE = np.float32(4.0 / 255.0)
_DQ_BIAS = np.float32(4.0 / 512.0 - 2.0)


def dequantize_bytes(q: np.ndarray) -> np.ndarray:
    """uint8 -> float32 as q * 4/255 + 4/512 - 2, in float32 like the starter code's Dequantize."""
    return q.astype(np.float32) * _DQ_SCALE + _DQ_BIAS


def quantize_floats(x: np.ndarray) -> np.ndarray:
    """float -> uint8: clip to [-2, 2], round((x + 2) * 255 / 4)."""
    x = np.clip(np.asarray(x, dtype=np.float64), -2.0, 2.0)
    return np.round((x + 2.0) * (255.0 / 4.0)).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------
# YT8M records


@dataclass
class YT8MRecord:
    """One YT8M video. `level` "video": rgb float32[1024], audio float32[128] (the release's means);
    "frame": rgb float32[T,1024], audio float32[T,128], dequantized. `schema` "2018" (key `id`) or
    "2017" (key `video_id`). `labels` is None for unlabelled (test) records."""

    id: str
    labels: np.ndarray | None
    rgb: np.ndarray
    audio: np.ndarray
    level: str = "video"
    schema: str = "2018"

    @property
    def num_frames(self) -> int | None:
        return int(self.rgb.shape[0]) if self.level == "frame" else None

    def __repr__(self) -> str:
        labels = None if self.labels is None else self.labels.tolist()
        return (f"YT8MRecord(id={self.id!r}, labels={labels}, rgb={list(self.rgb.shape)}, "
                f"audio={list(self.audio.shape)}, level={self.level!r}, schema={self.schema!r})")


@dataclass
class AudioSetRecord:
    """One AudioSet segment: `audio` float32[T,128] dequantized VGGish embeddings (one per second)."""

    video_id: str
    start_time: float
    end_time: float
    labels: np.ndarray
    audio: np.ndarray


def _one_bytes(features: dict, key: str) -> bytes:
    value = features[key]
    if not isinstance(value, list) or len(value) != 1:
        raise _Malformed(f"feature '{key}' should hold one bytes value")
    return value[0]


def _decode_id(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _Malformed(f"video id is not UTF-8: {raw[:40]!r}") from None


def _check_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        wrong = labels[(labels < 0) | (labels >= num_classes)]
        raise _Malformed(f"label {int(wrong[0])} outside the vocabulary (0..{num_classes - 1})")
    return labels


def _float_feature(features: dict, key: str, size: int) -> np.ndarray:
    if key not in features:
        raise _Malformed(f"missing feature '{key}'")
    value = features[key]
    if not isinstance(value, np.ndarray) or value.dtype != np.float32:
        raise _Malformed(f"feature '{key}' is not a float list")
    if value.size != size:
        raise _Malformed(f"feature '{key}' has {value.size} values, expected {size}")
    return value


def _frames(lists: dict, key: str, size: int) -> np.ndarray:
    steps = lists.get(key)
    if steps is None:
        raise _Malformed(f"missing feature list '{key}'")
    out = np.empty((len(steps), size), dtype=np.uint8)
    for t, step in enumerate(steps):
        if not isinstance(step, list) or len(step) != 1 or len(step[0]) != size:
            got = len(step[0]) if isinstance(step, list) and len(step) == 1 else "not one bytes value"
            raise _Malformed(f"feature list '{key}' frame {t}: expected {size} bytes, got {got}")
        out[t] = np.frombuffer(step[0], dtype=np.uint8)
    return out


def _labels_of(features: dict, num_classes: int) -> np.ndarray | None:
    if "labels" not in features:
        return None
    labels = features["labels"]
    if isinstance(labels, list) and not labels:
        return np.empty(0, dtype=np.int64)  # an empty Feature
    if not isinstance(labels, np.ndarray) or labels.dtype != np.int64:
        raise _Malformed("feature 'labels' is not an int64 list")
    return _check_labels(labels, num_classes)


def _yt8m_record(features: dict, lists: dict | None, num_classes: int) -> YT8MRecord:
    if "id" in features:
        vid, schema = _decode_id(_one_bytes(features, "id")), "2018"
    elif "video_id" in features:
        vid, schema = _decode_id(_one_bytes(features, "video_id")), "2017"
    else:
        raise _Malformed("missing feature 'id' (2018 schema) or 'video_id' (2017 schema)")
    labels = _labels_of(features, num_classes)
    if lists and ("rgb" in lists or "audio" in lists):
        q_rgb = _frames(lists, "rgb", RGB_DIM)
        q_audio = _frames(lists, "audio", AUDIO_DIM)
        if len(q_rgb) != len(q_audio):
            raise _Malformed(f"{len(q_rgb)} rgb frames but {len(q_audio)} audio frames")
        return YT8MRecord(vid, labels, dequantize_bytes(q_rgb), dequantize_bytes(q_audio), "frame", schema)
    if lists and "audio_embedding" in lists:
        raise _Malformed("this is an AudioSet record (feature list 'audio_embedding'); read it with "
                         "read_audioset_records")
    rgb = _float_feature(features, "mean_rgb", RGB_DIM).copy()
    audio = _float_feature(features, "mean_audio", AUDIO_DIM).copy()
    return YT8MRecord(vid, labels, rgb, audio, "video", schema)


def _fast_record(data: bytes, parsed: tuple, limit: int) -> YT8MRecord:
    """A YT8MRecord from what `_fast_video_entry` found."""
    key, vid, packed, rgb_at, audio_at = parsed
    labels = None
    if packed is not None:
        values: list[int] = []
        _packed_varints(packed, 0, len(packed), values)
        if values and max(values) >= limit:  # unsigned here: a negative int64 is a huge value
            wrong = max(values)
            raise _Malformed(f"label {wrong - (1 << 64) if wrong >= 1 << 63 else wrong} outside the vocabulary "
                             f"(0..{limit - 1})")
        labels = np.array(values, dtype=np.int64)
    return YT8MRecord(
        _decode_id(vid), labels,
        np.frombuffer(data, "<f4", RGB_DIM, rgb_at).astype(np.float32),
        np.frombuffer(data, "<f4", AUDIO_DIM, audio_at).astype(np.float32),
        "video", "2018" if key == _ID else "2017",
    )


def read_records(
    paths: PathLike | Sequence[PathLike],
    skip_bad: bool = False,
    num_classes: int | None = None,
    stats: ReadStats | None = None,
) -> Iterator[YT8MRecord]:
    """Every YT8M record (video- or frame-level, 2017 or 2018 schema) of the files, in order.

    Labels are checked against `num_classes` (the vocabulary size; default: the largest YT8M
    vocabulary, 4,716). Pass a `ReadStats` to learn how many records were read and skipped.
    """
    limit = num_classes or MAX_NUM_CLASSES
    local = stats if stats is not None else ReadStats()
    for path in expand_paths(paths):
        data = _read_file(path)
        skipped_before = local.skipped
        local.files += 1
        for index, start, end in _frame(data, path, skip_bad, local):
            try:
                fast = _fast_video_entry(data, start, end)
                if fast is not None:
                    record = _fast_record(data, fast, limit)
                else:
                    features, lists = _decode_message(data, start, end)
                    record = _yt8m_record(features, lists, limit)
            except _Malformed as exc:
                _bad(path, index, str(exc), skip_bad, local)
                continue
            local.records += 1
            yield record
        if local.skipped > skipped_before:
            log.warning("%s: skipped %d bad records", path, local.skipped - skipped_before)


def read_audioset_records(
    paths: PathLike | Sequence[PathLike], skip_bad: bool = False, stats: ReadStats | None = None
) -> Iterator[AudioSetRecord]:
    """AudioSet release records: context video_id, start/end_time_seconds, labels (AudioSet class
    indices, 0..526); feature list audio_embedding (128 quantized bytes per second)."""
    local = stats if stats is not None else ReadStats()
    for path in expand_paths(paths):
        data = _read_file(path)
        local.files += 1
        for index, start, end in _frame(data, path, skip_bad, local):
            try:
                context, lists = _decode_message(data, start, end)
                vid = _decode_id(_one_bytes(context, "video_id"))
                times = [_float_feature(context, k, 1)[0] for k in ("start_time_seconds", "end_time_seconds")]
                labels = _labels_of(context, 1 << 62)
                audio = dequantize_bytes(_frames(lists or {}, "audio_embedding", AUDIO_DIM))
            except _Malformed as exc:
                _bad(path, index, str(exc), skip_bad, local)
                continue
            local.records += 1
            yield AudioSetRecord(vid, float(times[0]), float(times[1]),
                                 labels if labels is not None else np.empty(0, np.int64), audio)


def scan_labels(paths: PathLike | Sequence[PathLike], skip_bad: bool = False) -> tuple[set[str], int | None]:
    """The id schemas ("2017"/"2018") and the largest label of the files, from the record contexts
    only (features and frames are not decoded): what vocabulary detection needs."""
    schemas: set[str] = set()
    max_label: int | None = None
    stats = ReadStats()
    packed: list[bytes] = []  # label varints of canonical records, decoded together at the end
    packed_where: list[tuple[Path, int]] = []
    for path in expand_paths(paths):
        data = _read_file(path)
        for index, start, end in _frame(data, path, skip_bad, stats):
            fast = _fast_video_entry(data, start, end)
            if fast is not None:
                schemas.add("2018" if fast[0] == _ID else "2017")
                if fast[2]:
                    packed.append(fast[2])
                    packed_where.append((path, index))
                continue
            try:
                context, _ = _decode_message(data, start, end, context_only=True)
                labels = _labels_of(context, 1 << 62)
            except _Malformed as exc:
                _bad(path, index, str(exc), skip_bad, stats)
                continue
            if "video_id" in context and "id" not in context:
                schemas.add("2017")
            elif "id" in context:
                schemas.add("2018")
            if labels is not None and labels.size:
                top = int(labels.max())
                max_label = top if max_label is None else max(max_label, top)
    values, _, ok = _decode_varint_chunks(packed)
    for i in np.flatnonzero(~ok):
        _bad(packed_where[i][0], packed_where[i][1], _label_varint_problem(packed[i], 1 << 62), skip_bad, stats)
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

    def as_dict(self) -> dict:
        return {
            "path": self.path, "kind": self.kind, "schema": self.schema, "records": self.records,
            "labelled": self.labelled,
            "frames": None if self.frames is None else dict(zip(("min", "mean", "max"), self.frames)),
            "bad": self.bad, "max_label": self.max_label,
        }


def _peek_kind(path: Path) -> str:
    data = _read_file(path)
    for _, start, end in _frame(data, path, True, ReadStats(quiet=True)):
        try:
            _, lists = _decode_message(data, start, end)
        except _Malformed:
            continue
        if lists and "audio_embedding" in lists:
            return "audioset"
        return "yt8m"
    return "yt8m"


def inspect_file(path: PathLike, skip_bad: bool = False) -> FileInfo:
    """Read one record file fully (every record validated) and summarise it for `vtag info`."""
    path = Path(path)
    stats = ReadStats()
    frame_counts: list[int] = []
    kinds: set[str] = set()
    schemas: set[str] = set()
    labelled = 0
    max_label: int | None = None
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
    return FileInfo(str(path), kind, schema, stats.records, labelled, frames, stats.skipped, max_label)


# ---------------------------------------------------------------------------------------------------
# fast batched video-level reader


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


def _float_entry_header(key: bytes, count: int) -> bytes:
    """The bytes TF writes before the floats of a `count`-float map entry of tf.train.Features:
    entry tag+length, key, value tag+length, float_list tag+length, packed tag+length."""
    packed = bytearray([0x0A])
    _put_varint(packed, 4 * count)
    feature = bytearray([0x12])
    _put_varint(feature, len(packed) + 4 * count)
    feature += packed
    body = bytearray()
    _put_len(body, 1, key)
    body.append(0x12)
    _put_varint(body, len(feature) + 4 * count)
    body += feature
    header = bytearray([0x0A])
    _put_varint(header, len(body) + 4 * count)
    return bytes(header + body)


def _small_entry_header(key: bytes, tag: int, entry_len: int) -> bytes | None:
    """The header of a map entry of total content length `entry_len` (< 128) whose Feature holds one
    list (tag 0x0A bytes_list / 0x1A int64_list) with one length-delimited value: everything up to that
    value's bytes. None if no such entry has that length."""
    value_len = entry_len - 2 - len(key) - 6
    if value_len < 0:
        return None
    return bytes([0x0A, entry_len, 0x0A, len(key)]) + key + bytes(
        [0x12, value_len + 4, tag, value_len + 2, 0x0A, value_len])


_RGB_HEADER = _float_entry_header(b"mean_rgb", RGB_DIM)
_AUDIO_HEADER = _float_entry_header(b"mean_audio", AUDIO_DIM)
_RGB_BYTES = 4 * RGB_DIM
_AUDIO_BYTES = 4 * AUDIO_DIM
_RGB_SKIP = len(_RGB_HEADER)
_AUDIO_SKIP = len(_AUDIO_HEADER)
# Matching one of these canonical headers pins a small entry's whole structure: (first key byte, entry
# length) -> (header, what). Anything else goes to the general decoder.
_SMALL_ENTRIES: dict[tuple[int, int], tuple[bytes, int]] = {}
for _key, _tag, _what in ((b"id", 0x0A, 0), (b"video_id", 0x0A, 1), (b"labels", 0x1A, 2)):
    for _len in range(128):
        _header = _small_entry_header(_key, _tag, _len)
        if _header is not None:
            _SMALL_ENTRIES[(_key[0], _len)] = (_header, _what)
_ID, _VIDEO_ID, _LABELS = 0, 1, 2
# Smallest possible framed video-level record; bounds the record count of a byte count from above.
_MIN_RECORD = 16 + len(_RGB_HEADER) + _RGB_BYTES + len(_AUDIO_HEADER) + _AUDIO_BYTES


def _fast_video_entry(data: bytes, start: int, end: int):
    """Parse a video-level Example laid out as TF writes it, with a handful of byte reads and prefix
    matches. Returns (key, id bytes, packed label varints | None, rgb offset, audio offset), or None
    when the record is laid out any other way (the caller then uses the general decoder)."""
    if data[start] != 0x0A:
        return None
    n = data[start + 1]
    if n < 0x80:
        pos = start + 2
    elif data[start + 2] < 0x80:
        n = (n & 0x7F) | (data[start + 2] << 7)
        pos = start + 3
    else:
        return None
    if pos + n != end:
        # the 2018 release appends an empty field 2 (an empty feature_lists) to its Examples
        if pos + n + 2 != end or data[end - 2] != 0x12 or data[end - 1] != 0:
            return None
        end -= 2
    rgb_at = audio_at = -1
    vid = labels = key = None
    small = _SMALL_ENTRIES
    startswith = data.startswith
    while pos < end:
        entry_len = data[pos + 1]
        if entry_len < 0x80:  # a one-byte length: id, video_id or labels
            found = small.get((data[pos + 4], entry_len)) if pos + 4 < end else None
            if found is None or not startswith(found[0], pos):
                return None
            header, what = found
            value = data[pos + len(header):pos + 2 + entry_len]
            if what == _LABELS:
                if labels is not None:
                    return None
                labels = value
            else:
                if vid is not None:
                    return None
                vid, key = value, what
            pos += 2 + entry_len
        elif startswith(_RGB_HEADER, pos):
            if rgb_at >= 0:
                return None
            rgb_at = pos + _RGB_SKIP
            pos = rgb_at + _RGB_BYTES
        elif startswith(_AUDIO_HEADER, pos):
            if audio_at >= 0:
                return None
            audio_at = pos + _AUDIO_SKIP
            pos = audio_at + _AUDIO_BYTES
        else:
            return None
    if pos != end or rgb_at < 0 or audio_at < 0 or vid is None:
        return None
    return key, vid, labels, rgb_at, audio_at


def _label_varint_problem(packed: bytes, limit: int) -> str:
    """The message for packed labels that `_decode_varint_chunks` rejected."""
    values: list[int] = []
    try:
        _packed_varints(packed, 0, len(packed), values)
    except _Malformed as exc:
        return f"labels: {exc}"
    wrong = next((v for v in values if v >= limit), max(values, default=0))
    return f"label {wrong - (1 << 64) if wrong >= 1 << 63 else wrong} outside the vocabulary (0..{limit - 1})"


def _decode_varint_chunks(chunks: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode many packed-varint byte strings at once. Returns (values int64, start offset of each
    chunk's values in `values`, ok per chunk); a chunk is not ok (and decodes as empty) when it ends
    mid-varint or holds a varint longer than 9 bytes (a negative int64, beyond any label)."""
    lengths = np.fromiter((len(c) for c in chunks), dtype=np.int64, count=len(chunks))
    b = np.frombuffer(b"".join(chunks), dtype=np.uint8)
    chunk_end = np.cumsum(lengths)
    ok = np.ones(len(chunks), dtype=bool)
    nonempty = lengths > 0
    ok[nonempty] = b[chunk_end[nonempty] - 1] < 0x80
    if not ok.all():  # a cut-off varint would run into the next chunk: decode the good chunks alone
        values, starts, inner_ok = _decode_varint_chunks([c if good else b"" for c, good in zip(chunks, ok)])
        return values, starts, ok & inner_ok
    terminal = b < 0x80
    ends = np.flatnonzero(terminal)
    starts = np.concatenate(([0], ends[:-1] + 1)) if ends.size else ends
    sizes = ends - starts + 1
    counted = np.concatenate(([0], np.cumsum(terminal)))
    value_start = counted[chunk_end - lengths]
    if sizes.size and sizes.max() > 9:
        long_varints = np.zeros(b.size + 1, dtype=np.int64)
        long_varints[ends[sizes > 9]] = 1
        long_before = np.concatenate(([0], np.cumsum(long_varints)))
        ok &= long_before[chunk_end] == long_before[chunk_end - lengths]
        if not ok.all():
            values, starts, inner_ok = _decode_varint_chunks([c if good else b"" for c, good in zip(chunks, ok)])
            return values, starts, ok & inner_ok
    if not ends.size:
        return np.zeros(0, dtype=np.int64), value_start, ok
    within = np.arange(b.size) - np.repeat(starts, sizes)
    values = np.add.reduceat((b & 0x7F).astype(np.int64) << (7 * within), starts)
    return values, value_start, ok


def _video_file(data: bytes, path: Path, skip_bad: bool, stats: ReadStats, out: dict) -> None:
    """Append every good video-level record of one file to `out` (see read_video_level_arrays)."""
    size = len(data)
    src = memoryview(data)
    rgb_mv, audio_mv = out["rgb_mv"], out["audio_mv"]
    ids, raw_labels, keys, rec_index = out["ids"], out["raw_labels"], out["keys"], out["rec_index"]
    n = out["n"]
    capacity = out["capacity"]
    crc = google_crc32c.value
    unpack_header = _HEADER.unpack_from
    unpack_u32 = _U32.unpack_from
    length_crcs: dict[int, int] = {}
    pos = 0
    index = 0
    try:
        while pos < size:
            if pos + 12 > size:
                _bad(path, index, f"truncated: {size - pos} bytes left where a 12-byte record header "
                     "belongs (file cut short?)", skip_bad, stats)
                break
            length, length_crc = unpack_header(data, pos)
            expected = length_crcs.get(length)
            if expected is None:
                expected = length_crcs[length] = masked_crc32c(data[pos:pos + 8])
            if expected != length_crc:
                _bad(path, index, _LENGTH_CRC_PROBLEM[index == 0], skip_bad, stats)
                break
            start = pos + 12
            end = start + length
            if end + 4 > size:
                _bad(path, index, f"truncated: record says {length} bytes but the file ends "
                     f"{size - start} bytes later (file cut short?)", skip_bad, stats)
                break
            pos = end + 4
            c = crc(data[start:end])
            if ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF != unpack_u32(data, end)[0]:
                _bad(path, index, "CRC mismatch in the record data (file corrupt)", skip_bad, stats)
                index += 1
                continue
            if n >= capacity:  # only records smaller than any valid one get here
                _bad(path, index, "record too small to be a video-level record", skip_bad, stats)
                index += 1
                continue
            parsed = _fast_video_entry(data, start, end)
            if parsed is not None:
                key, vid, labels, rgb_at, audio_at = parsed
                rgb_mv[n * 4096:(n + 1) * 4096] = src[rgb_at:rgb_at + 4096]
                audio_mv[n * 512:(n + 1) * 512] = src[audio_at:audio_at + 512]
            else:
                try:
                    features, lists = _decode_message(data, start, end)
                    if lists and ("rgb" in lists or "audio_embedding" in lists) and "mean_rgb" not in features:
                        # the wrong reader, not a bad record: never skipped
                        raise VtagError(f"{path}: record {index} is a frame-level record without video-level "
                                        "means; read frame-level files with read_records and pool_frames")
                    record = _yt8m_record(features, None, out["limit"])
                except _Malformed as exc:
                    _bad(path, index, str(exc), skip_bad, stats)
                    index += 1
                    continue
                vid = record.id.encode("utf-8")
                key = _ID if record.schema == "2018" else _VIDEO_ID
                labels = record.labels
                out["rgb"][n] = record.rgb
                out["audio"][n] = record.audio
            ids.append(vid)
            raw_labels.append(labels)
            keys.append(key)
            rec_index.append(index)
            n += 1
            index += 1
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
    capacity = max(1, sum(os.path.getsize(p) for p in files) // _MIN_RECORD + 1)
    rgb = np.empty((capacity, RGB_DIM), dtype=np.float32)
    audio = np.empty((capacity, AUDIO_DIM), dtype=np.float32)
    out = {"rgb": rgb, "audio": audio, "rgb_mv": memoryview(rgb).cast("B"), "audio_mv": memoryview(audio).cast("B"),
           "ids": [], "raw_labels": [], "keys": [], "rec_index": [], "n": 0, "capacity": capacity,
           "limit": limit}
    file_starts: list[int] = []  # record number at which each file starts, to name files in errors
    try:
        for path in files:
            file_starts.append(out["n"])
            skipped_before = local.skipped
            local.files += 1
            _video_file(_read_file(path), path, skip_bad, local, out)
            if local.skipped > skipped_before:
                log.warning("%s: skipped %d bad records", path, local.skipped - skipped_before)
    finally:
        out["rgb_mv"].release()
        out["audio_mv"].release()
    n = out["n"]
    ids_raw, raw_labels, keys, rec_index = out["ids"], out["raw_labels"], out["keys"], out["rec_index"]

    # labels: decode the packed varints of all records in one go, then check them in one go
    packed = [x for x in raw_labels if isinstance(x, bytes)]
    values, value_start, ok = _decode_varint_chunks(packed)
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
            bad[packed_at[j]] = _label_varint_problem(packed[j], limit)
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
    keep = None
    if bad:
        for i in sorted(bad):
            _bad(files[bisect.bisect_right(file_starts, i) - 1], rec_index[i], bad[i], skip_bad, local)
        keep = np.array([i not in bad for i in range(n)])
    schema = ["2018" if k == _ID else "2017" for k in keys]
    rgb, audio = rgb[:n], audio[:n]
    if keep is not None:
        rgb, audio = rgb[keep], audio[keep]
        id_text = [x for x, k in zip(id_text, keep) if k]
        labels = [x for x, k in zip(labels, keep) if k]
        schema = [x for x, k in zip(schema, keep) if k]
    local.records += len(id_text)
    return VideoLevelArrays(id_text, labels, rgb, audio, schema, local.skipped)


# ---------------------------------------------------------------------------------------------------
# writing


def write_records(path: PathLike, records: Iterable[YT8MRecord], level: str = "video") -> int:
    """Write YT8M records to one TFRecord file, atomically; returns the count.

    level "video": Example with id/video_id, labels, mean_rgb[1024], mean_audio[128] (records must be
    video-level). level "frame": SequenceExample with context id/video_id, labels and feature lists
    rgb/audio, one quantized byte string per frame; float frames are quantized, uint8 frames are
    written as they are. The id key follows each record's `schema` ("2017" -> video_id).
    """
    if level not in ("video", "frame"):
        raise VtagError(f"level must be 'video' or 'frame', not {level!r}")

    def payloads() -> Iterator[bytes]:
        for i, record in enumerate(records):
            key = "video_id" if record.schema == "2017" else "id"
            context: dict = {key: [record.id]}
            if record.labels is not None:
                context["labels"] = np.asarray(record.labels, dtype=np.int64)
            rgb, audio = np.asarray(record.rgb), np.asarray(record.audio)
            if level == "video":
                if rgb.shape != (RGB_DIM,) or audio.shape != (AUDIO_DIM,):
                    raise VtagError(f"{path}: record {i} ({record.id}): video-level records need rgb[1024] "
                                    f"and audio[128], got {rgb.shape} and {audio.shape}")
                context["mean_rgb"] = rgb.astype(np.float32)
                context["mean_audio"] = audio.astype(np.float32)
                yield encode_example(context)
            else:
                if rgb.ndim != 2 or rgb.shape[1] != RGB_DIM or audio.ndim != 2 or audio.shape[1] != AUDIO_DIM \
                        or len(rgb) != len(audio):
                    raise VtagError(f"{path}: record {i} ({record.id}): frame-level records need rgb[T,1024] "
                                    f"and audio[T,128], got {rgb.shape} and {audio.shape}")
                q_rgb = rgb if rgb.dtype == np.uint8 else quantize_floats(rgb)
                q_audio = audio if audio.dtype == np.uint8 else quantize_floats(audio)
                lists = {"rgb": [[row.tobytes()] for row in q_rgb], "audio": [[row.tobytes()] for row in q_audio]}
                yield encode_sequence_example(context, lists)

    return write_tfrecord(path, payloads())


# ---------------------------------------------------------------------------------------------------
# pooling


def pool_frames(rgb: np.ndarray, audio: np.ndarray, spec: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """Frames -> model inputs. spec "mean": (rgb mean[1024], audio mean[128]); "mean+std": mean then
    population std per modality (2048, 256). 1-D inputs are video-level means already: fine for
    "mean", an error for "mean+std" (the release's video-level records carry no std)."""
    if spec not in INPUT_SPECS:
        raise VtagError(f"input spec must be one of {', '.join(INPUT_SPECS)}, not {spec!r}")
    rgb, audio = np.asarray(rgb), np.asarray(audio)
    if rgb.ndim == 1 and audio.ndim == 1:
        if spec != "mean":
            raise VtagError("video-level records hold only mean features; input spec 'mean+std' needs "
                            "frame-level records (or use a model with input spec 'mean')")
        return rgb.astype(np.float32, copy=False), audio.astype(np.float32, copy=False)
    if rgb.ndim != 2 or audio.ndim != 2:
        raise VtagError(f"frames must be [T, D] arrays, got rgb {rgb.shape} and audio {audio.shape}")
    if len(rgb) == 0 or len(audio) == 0:
        raise VtagError("cannot pool a video with zero frames")
    pooled = []
    for x in (rgb, audio):
        x64 = x.astype(np.float64)
        mean = x64.mean(axis=0)
        parts = [mean] if spec == "mean" else [mean, x64.std(axis=0)]
        pooled.append(np.concatenate(parts).astype(np.float32))
    return pooled[0], pooled[1]
