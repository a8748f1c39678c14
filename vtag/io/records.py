"""YouTube-8M record files: the YT8M schemas on top of `vtag.io.tfrecord`'s framing and codec.

- `read_records` yields `YT8MRecord`s (video-level `mean_rgb`/`mean_audio`, or frame-level `rgb`/`audio`
  dequantized), for both id schemas (2018 `id`, 2017 `video_id`);
- `write_records` writes either level; `pool_frames` turns frames into model inputs;
- `read_audioset_records` reads AudioSet release files (`audio_embedding` feature lists).
The fast batched reader is `vtag.io.fast_reader`; summaries for `vtag info` are `vtag.io.inspect`.

A bad record (truncated file, CRC mismatch, missing feature, wrong length, label out of range, a
feature value that is NaN, infinite or absurdly large) raises
one `VtagError` naming the file and record index; with `skip_bad=True` it is skipped and counted in a
`ReadStats` instead. No value is ever silently wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from vtag.errors import VtagError
from vtag.io.paths import PathLike, expand_paths
from vtag.io.tfrecord import (
    Malformed, ReadStats, bad_record, decode_message, encode_example, encode_sequence_example, frame_records,
    packed_varints, read_file, write_tfrecord,
)
from vtag.io.yt8m_layout import AUDIO_DIM, KEY_ID, RGB_DIM, fast_video_entry

log = logging.getLogger("vtag.io.records")

# The largest YT8M vocabulary (2017). A label at or above it is outside every vocabulary; readers that
# know the vocabulary in use pass its size as `num_classes` for the exact check.
MAX_NUM_CLASSES = 4716
INPUT_SPECS = {"mean": (RGB_DIM, AUDIO_DIM), "mean+std": (2 * RGB_DIM, 2 * AUDIO_DIM)}
# Dequantized YT8M features lie in [-2, 2.008] (every shard of the 2017 and 2018 releases); an
# extractor's unquantized means stay within a few tens. A value beyond this is corruption, not a
# feature: it would saturate every score and give arbitrary labels.
FEATURE_LIMIT = 1e4


# ---------------------------------------------------------------------------------------------------
# quantization (the starter code's Dequantize; the extractor's 8-bit quantization)

_DQ_SCALE = np.float32(4.0 / 255.0)
_DQ_BIAS = np.float32(4.0 / 512.0 - 2.0)


def dequantize_bytes(q: np.ndarray) -> np.ndarray:
    """uint8 -> float32 as q * 4/255 + 4/512 - 2, in float32 like the starter code's Dequantize."""
    return q.astype(np.float32) * _DQ_SCALE + _DQ_BIAS


def quantize_floats(x: np.ndarray) -> np.ndarray:
    """float -> uint8 as YouTube-8M's extractor (`extract_tfrecords_main.quantize`) does it:
    `(clip(x, -2, 2) + 2) * 63.75` in float32, then Python 2's `int(round(v))`, which rounds
    halves away from zero (not to even). The float32 products are exact in float64, where
    `floor(v + 0.5)` is that rounding for v >= 0."""
    scaled = (np.clip(np.asarray(x, dtype=np.float32), np.float32(-2.0), np.float32(2.0)) + np.float32(2.0)) \
        * np.float32(63.75)
    return np.floor(scaled.astype(np.float64) + 0.5).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------
# YT8M records


@dataclass
class YT8MRecord:
    """One YT8M video. `level` "video": rgb float32[1024], audio float32[128] (the release's means);
    "frame": rgb float32[T,1024], audio float32[T,128], dequantized. `schema` "2018" (key `id`) or
    "2017" (key `video_id`). `labels` is None for unlabelled (test) records. `provenance` holds how
    `vtag extract` made the features (its `vtag_*` bytes features, see PROVENANCE_KEYS), None for
    records written elsewhere (the release)."""

    id: str
    labels: np.ndarray | None
    rgb: np.ndarray
    audio: np.ndarray
    level: str = "video"
    schema: str = "2018"
    provenance: dict[str, str] | None = None

    @property
    def num_frames(self) -> int | None:
        return int(self.rgb.shape[0]) if self.level == "frame" else None

    def __repr__(self) -> str:
        labels = None if self.labels is None else self.labels.tolist()
        extra = f", provenance={self.provenance!r}" if self.provenance else ""
        return (f"YT8MRecord(id={self.id!r}, labels={labels}, rgb={list(self.rgb.shape)}, "
                f"audio={list(self.audio.shape)}, level={self.level!r}, schema={self.schema!r}{extra})")


# How extracted features were made, as extra bytes features of each record `vtag extract` writes:
# readers that ask for id/labels/mean_rgb/... (TensorFlow's parse_single_example, Google's starter
# code) never see them. vtag_extractor: "random", or the sha256 of the Inception and PCA files, then
# "; vggish unverified sha256:<16 hex>" (and/or vggish_pca) where a user's own file made the audio;
# vtag_video / vtag_audio: "inception" / "vggish", "random", or "zeros" (the file had no such track).
PROVENANCE_PREFIX = "vtag_"
PROVENANCE_KEYS = ("vtag_extractor", "vtag_video", "vtag_audio")
_PROVENANCE_CHARS = 512  # a value is a short mark; a longer one is cut, never allowed to fill memory


def provenance_warnings(provenance: dict[str, str] | None) -> list[str]:
    """What a user must be told about features made this way (one line each; empty when nothing)."""
    provenance = provenance or {}
    out = []
    extractor = provenance.get("vtag_extractor", "")
    if extractor == "random":
        out.append("extractor: random weights — labels not meaningful")
    for part in extractor.split("; "):
        if " unverified sha256:" in part:
            out.append(f"extractor: {part} — your own weights, not the official ones the models were trained on")
    for track in ("video", "audio"):
        if provenance.get(f"vtag_{track}") == "zeros":
            out.append(f"{track}: zero-filled (the file had no {track} track)")
    return out


def _provenance_of(features: dict) -> dict[str, str] | None:
    found = {}
    for key, value in features.items():
        # anything else under the prefix is someone else's extra feature: ignored, never an error
        if key.startswith(PROVENANCE_PREFIX) and isinstance(value, list) and len(value) == 1 \
                and isinstance(value[0], bytes):
            found[key] = value[0][:_PROVENANCE_CHARS].decode("utf-8", "replace")
    return found or None


@dataclass
class AudioSetRecord:
    """One AudioSet segment: `audio` float32[T,128] dequantized VGGish embeddings (one per second)."""

    video_id: str
    start_time: float
    end_time: float
    labels: np.ndarray
    audio: np.ndarray


def value_problem(values: np.ndarray, name: str) -> str | None:
    """None when every value is finite and within FEATURE_LIMIT, else what is wrong (for a message).
    min and max propagate NaN, so the usual case is two passes over the array and no temporary."""
    if values.size == 0 or (values.min() >= -FEATURE_LIMIT and values.max() <= FEATURE_LIMIT):
        return None
    if np.isnan(values).any():
        what = "NaN"
    elif np.isinf(values).any():
        what = "infinity"
    else:
        flat = values.reshape(-1)
        what = f"{float(flat[np.argmax(np.abs(flat))]):.3g}, far outside any feature's range (about -2..2)"
    return f"{name} holds {what}; the file is corrupt"


def record_where(index: int, vid: str) -> str:
    """How a bad record is named when its id is known: 'record 7 (id 'abcd')' in `bad_record`'s message."""
    return f"{index} (id {vid!r})"


def _one_bytes(features: dict, key: str) -> bytes:
    value = features[key]
    if not isinstance(value, list) or len(value) != 1:
        raise Malformed(f"feature '{key}' should hold one bytes value")
    return value[0]


def _decode_id(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed(f"video id is not UTF-8: {raw[:40]!r}") from None


def _check_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        wrong = labels[(labels < 0) | (labels >= num_classes)]
        raise Malformed(f"label {int(wrong[0])} outside the vocabulary (0..{num_classes - 1})")
    return labels


def _float_feature(features: dict, key: str, size: int) -> np.ndarray:
    if key not in features:
        raise Malformed(f"missing feature '{key}'")
    value = features[key]
    if not isinstance(value, np.ndarray) or value.dtype != np.float32:
        raise Malformed(f"feature '{key}' is not a float list")
    if value.size != size:
        raise Malformed(f"feature '{key}' has {value.size} values, expected {size}")
    return value


def _frames(lists: dict, key: str, size: int) -> np.ndarray:
    steps = lists.get(key)
    if steps is None:
        raise Malformed(f"missing feature list '{key}'")
    out = np.empty((len(steps), size), dtype=np.uint8)
    for t, step in enumerate(steps):
        if not isinstance(step, list) or len(step) != 1 or len(step[0]) != size:
            got = len(step[0]) if isinstance(step, list) and len(step) == 1 else "not one bytes value"
            raise Malformed(f"feature list '{key}' frame {t}: expected {size} bytes, got {got}")
        out[t] = np.frombuffer(step[0], dtype=np.uint8)
    return out


def labels_of(features: dict, num_classes: int) -> np.ndarray | None:
    if "labels" not in features:
        return None
    labels = features["labels"]
    if isinstance(labels, list) and not labels:
        return np.empty(0, dtype=np.int64)  # an empty Feature
    if not isinstance(labels, np.ndarray) or labels.dtype != np.int64:
        raise Malformed("feature 'labels' is not an int64 list")
    return _check_labels(labels, num_classes)


class NotYT8M(Malformed):
    """A well-formed record of another data set."""


def yt8m_record(features: dict, lists: dict | None, num_classes: int) -> YT8MRecord:
    if "id" in features:
        vid, schema = _decode_id(_one_bytes(features, "id")), "2018"
    elif "video_id" in features:
        vid, schema = _decode_id(_one_bytes(features, "video_id")), "2017"
    else:
        raise Malformed("missing feature 'id' (2018 schema) or 'video_id' (2017 schema)")
    labels = labels_of(features, num_classes)
    if lists and ("rgb" in lists or "audio" in lists):
        q_rgb = _frames(lists, "rgb", RGB_DIM)
        q_audio = _frames(lists, "audio", AUDIO_DIM)
        if len(q_rgb) != len(q_audio):
            raise Malformed(f"{len(q_rgb)} rgb frames but {len(q_audio)} audio frames")
        return YT8MRecord(vid, labels, dequantize_bytes(q_rgb), dequantize_bytes(q_audio), "frame", schema,
                          _provenance_of(features))
    if lists and "audio_embedding" in lists:
        raise NotYT8M("this is an AudioSet record (feature list 'audio_embedding'), not a YouTube-8M one: "
                      "`vtag info` describes AudioSet files; classify, eval and train need YT8M records")
    rgb = _float_feature(features, "mean_rgb", RGB_DIM).copy()
    audio = _float_feature(features, "mean_audio", AUDIO_DIM).copy()
    return YT8MRecord(vid, labels, rgb, audio, "video", schema, _provenance_of(features))


def _fast_record(data: bytes, parsed: tuple, limit: int) -> YT8MRecord:
    """A YT8MRecord from what `fast_video_entry` found."""
    key, vid, packed, rgb_at, audio_at = parsed
    labels = None
    if packed is not None:
        values: list[int] = []
        packed_varints(packed, 0, len(packed), values)
        if values and max(values) >= limit:  # unsigned here: a negative int64 is a huge value
            wrong = max(values)
            raise Malformed(f"label {wrong - (1 << 64) if wrong >= 1 << 63 else wrong} outside the vocabulary "
                             f"(0..{limit - 1})")
        labels = np.array(values, dtype=np.int64)
    return YT8MRecord(
        _decode_id(vid), labels,
        np.frombuffer(data, "<f4", RGB_DIM, rgb_at).astype(np.float32),
        np.frombuffer(data, "<f4", AUDIO_DIM, audio_at).astype(np.float32),
        "video", "2018" if key == KEY_ID else "2017",
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
        data = read_file(path)
        skipped_before = local.skipped
        local.files += 1
        for index, start, end in frame_records(data, path, skip_bad, local):
            try:
                fast = fast_video_entry(data, start, end)
                if fast is not None:
                    record = _fast_record(data, fast, limit)
                else:
                    features, lists = decode_message(data, start, end)
                    record = yt8m_record(features, lists, limit)
            except NotYT8M as exc:  # the whole file is another kind: skipping each record would hide that
                raise VtagError(f"{path}: {exc}") from None
            except Malformed as exc:
                bad_record(path, index, str(exc), skip_bad, local)
                continue
            if record.level == "video":  # frame-level values are dequantized bytes: always in range
                problem = value_problem(record.rgb, "mean_rgb") or value_problem(record.audio, "mean_audio")
                if problem:
                    bad_record(path, record_where(index, record.id), problem, skip_bad, local)
                    continue
            local.records += 1
            yield record
        if local.skipped > skipped_before:
            log.warning("%s: skipped %d bad records", path, local.skipped - skipped_before)


def no_records(paths: Sequence[PathLike], stats: ReadStats) -> VtagError:
    """The error for a read that gave nothing to score: empty files, or every record skipped as bad."""
    if stats.skipped:
        first = f" (the first: {stats.errors[0]})" if stats.errors else ""
        return VtagError(f"no video could be scored: all {stats.skipped} records were skipped as bad{first}")
    names = [str(p) for p in paths]
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return VtagError(f"{shown}: no records")


def read_audioset_records(
    paths: PathLike | Sequence[PathLike], skip_bad: bool = False, stats: ReadStats | None = None
) -> Iterator[AudioSetRecord]:
    """AudioSet release records: context video_id, start/end_time_seconds, labels (AudioSet class
    indices, 0..526); feature list audio_embedding (128 quantized bytes per second)."""
    local = stats if stats is not None else ReadStats()
    for path in expand_paths(paths):
        data = read_file(path)
        local.files += 1
        for index, start, end in frame_records(data, path, skip_bad, local):
            try:
                context, lists = decode_message(data, start, end)
                vid = _decode_id(_one_bytes(context, "video_id"))
                times = [_float_feature(context, k, 1)[0] for k in ("start_time_seconds", "end_time_seconds")]
                labels = labels_of(context, 1 << 62)
                audio = dequantize_bytes(_frames(lists or {}, "audio_embedding", AUDIO_DIM))
            except NotYT8M as exc:  # the whole file is another kind: skipping each record would hide that
                raise VtagError(f"{path}: {exc}") from None
            except Malformed as exc:
                bad_record(path, index, str(exc), skip_bad, local)
                continue
            local.records += 1
            yield AudioSetRecord(vid, float(times[0]), float(times[1]),
                                 labels if labels is not None else np.empty(0, np.int64), audio)


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
            for name, value in (record.provenance or {}).items():
                if not name.startswith(PROVENANCE_PREFIX) or not isinstance(value, str):
                    raise VtagError(f"{path}: record {i} ({record.id}): provenance entries are "
                                    f"'{PROVENANCE_PREFIX}*' names with text values, not {name!r}: {value!r}")
                context[name] = [value]
            rgb, audio = np.asarray(record.rgb), np.asarray(record.audio)
            for name, values in (("rgb", rgb), ("audio", audio)):
                # quantizing NaN gives an arbitrary byte, and a NaN mean poisons every score read back
                problem = values.dtype != np.uint8 and value_problem(values, name)
                if problem:
                    raise VtagError(f"{path}: record {i} (id {record.id!r}): {problem.split(';')[0]}; nothing "
                                    "was written (the features that went in are broken)")
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

