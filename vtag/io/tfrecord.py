"""TFRecord files and the tf.train.Example / SequenceExample wire format, without TensorFlow or protobuf.

Nothing here knows about YouTube-8M (that is `vtag.io.records`). Two layers:
- framing: `iter_tfrecord` / `write_tfrecord` (uint64 length, masked CRC-32C of the length, payload,
  masked CRC-32C of the payload; both CRCs are checked on read; writes are atomic);
- a hand-written protobuf wire-format codec for `tf.train.Example` and `tf.train.SequenceExample`
  (`decode_example`, `encode_example`, `decode_sequence_example`, `encode_sequence_example`).

A bad record (truncated file, CRC mismatch) raises one `VtagError` naming the file and record index;
with `skip_bad=True` it is skipped and counted in a `ReadStats` instead. The private helpers
(`frame_records`, `decode_message`, `Malformed`, the varint writers) are shared with `vtag.io.records`, whose
readers frame and decode whole files in place.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Union

import google_crc32c
import numpy as np

from vtag.errors import VtagError
from vtag.io.atomic import atomic_write

log = logging.getLogger("vtag.io.tfrecord")

PathLike = Union[str, os.PathLike]
# A decoded feature: list of bytes (bytes_list), float32 array (float_list) or int64 array (int64_list).
FeatureValue = Union[list, np.ndarray]


class Malformed(Exception):
    """Internal: what is wrong with one record; the caller adds file and record index."""


# ---------------------------------------------------------------------------------------------------
# TFRecord framing

_MASK_DELTA = 0xA282EAD8
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_HEADER = struct.Struct("<QI")


def masked_crc32c(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


@dataclass
class ReadStats:
    """Counts from a read. `skipped` records were bad and left out (only with skip_bad=True);
    `errors` holds the first few messages, one line each."""

    files: int = 0
    records: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)
    quiet: bool = False  # no log line per skipped record (a peek at a file's first record)

    def add_bad(self, message: str) -> None:
        self.skipped += 1
        if len(self.errors) < 20:
            self.errors.append(message)


def bad_record(path: PathLike, index: int, what: str, skip_bad: bool, stats: ReadStats | None) -> None:
    """Raise for a bad record, or count it when skipping."""
    message = f"{path}: record {index}: {what}"
    if not skip_bad:
        raise VtagError(message + " (--skip-bad skips bad records and counts them)")
    if stats is None or not stats.quiet:
        log.warning("skipping bad record: %s", message)
    if stats is not None:
        stats.add_bad(message)


_LENGTH_CRC_PROBLEM = {
    False: "CRC mismatch in the record length (file corrupt; the rest of the file cannot be framed)",
    True: "CRC mismatch in the first record's length: not an uncompressed TFRecord file, or corrupt",
}


def read_file(path: PathLike) -> bytes:
    from vtag.io.remote import is_url, read_bytes

    if is_url(path):
        return read_bytes(path)
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise VtagError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def frame_records(data: bytes, path: PathLike, skip_bad: bool, stats: ReadStats | None) -> Iterator[tuple[int, int, int]]:
    """Yield (record index, payload start, payload end) for every good record of a whole file: the one
    framing loop every reader uses.

    A corrupt length leaves no way to find the next record, so it ends the file (one bad record);
    a corrupt payload is skipped and reading goes on.
    """
    size = len(data)
    pos = 0
    index = 0
    unpack_header = _HEADER.unpack_from
    unpack_u32 = _U32.unpack_from
    crc = google_crc32c.value
    # the CRC of a length field depends only on the length, and a shard's records share a few lengths
    length_crcs: dict[int, int] = {}
    while pos < size:
        if pos + 12 > size:
            bad_record(path, index, f"truncated: {size - pos} bytes left where a 12-byte record header belongs "
                       "(file cut short?)", skip_bad, stats)
            return
        length, length_crc = unpack_header(data, pos)
        expected = length_crcs.get(length)
        if expected is None:
            expected = length_crcs[length] = masked_crc32c(data[pos:pos + 8])
        if expected != length_crc:
            bad_record(path, index, _LENGTH_CRC_PROBLEM[index == 0], skip_bad, stats)
            return
        start = pos + 12
        end = start + length
        if end + 4 > size:
            bad_record(path, index, f"truncated: record says {length} bytes but the file ends "
                       f"{size - start} bytes later (file cut short?)", skip_bad, stats)
            return
        c = crc(data[start:end])
        if ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF != unpack_u32(data, end)[0]:
            bad_record(path, index, "CRC mismatch in the record data (file corrupt)", skip_bad, stats)
        else:
            yield index, start, end
        pos = end + 4
        index += 1


def iter_tfrecord(path: PathLike, skip_bad: bool = False, stats: ReadStats | None = None) -> Iterator[bytes]:
    """The payloads of one TFRecord file, both CRCs checked. Uncompressed files only."""
    data = read_file(path)
    if stats is not None:
        stats.files += 1
    for _, start, end in frame_records(data, path, skip_bad, stats):
        yield data[start:end]


def write_tfrecord(path: PathLike, payloads: Iterable[bytes]) -> int:
    """Write payloads as a TFRecord file, atomically. Returns the number of records."""
    count = 0

    def write(f) -> None:
        nonlocal count
        for payload in payloads:
            payload = bytes(payload)
            header = _U64.pack(len(payload))
            f.write(header)
            f.write(_U32.pack(masked_crc32c(header)))
            f.write(payload)
            f.write(_U32.pack(masked_crc32c(payload)))
            count += 1

    atomic_write(path, write)
    return count


# ---------------------------------------------------------------------------------------------------
# protobuf wire format: just what tf.train.Example / SequenceExample need


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise Malformed("protobuf varint runs past the end of its message")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise Malformed("protobuf varint longer than 10 bytes")


def _fields(buf: bytes, pos: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield (field number, wire type, a, b) for each field of a message in buf[pos:end]:
    for wire type 2 (length-delimited) a:b is the content; for 0 (varint) a is the value;
    for 1/5 (fixed64/32) a:b is the raw bytes."""
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise Malformed("protobuf field number 0")
        if wire == 2:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise Malformed("protobuf length-delimited field runs past the end of its message")
            yield number, wire, pos, pos + length
            pos += length
        elif wire == 0:
            value, pos = _varint(buf, pos, end)
            yield number, wire, value, 0
        elif wire == 5 or wire == 1:
            width = 4 if wire == 5 else 8
            if pos + width > end:
                raise Malformed("protobuf fixed-width field runs past the end of its message")
            yield number, wire, pos, pos + width
            pos += width
        else:
            raise Malformed(f"unsupported protobuf wire type {wire}")


def packed_varints(buf: bytes, pos: int, end: int, out: list) -> None:
    while pos < end:
        value, pos = _varint(buf, pos, end)
        out.append(value)


def _decode_feature(buf: bytes, pos: int, end: int) -> FeatureValue:
    """A tf.train.Feature: oneof bytes_list (1), float_list (2), int64_list (3); last one wins, as in
    protobuf. Repeated scalars are accepted packed or unpacked. An empty Feature decodes as []."""
    value: FeatureValue = []
    for number, wire, a, b in _fields(buf, pos, end):
        if wire != 2:
            continue  # unknown scalar field: protobuf parsers skip it
        if number == 1:
            items: list = []
            for n, w, x, y in _fields(buf, a, b):
                if n == 1:
                    if w != 2:
                        raise Malformed("bytes_list value with wrong wire type")
                    items.append(buf[x:y])
            value = items
        elif number == 2:
            chunks: list[np.ndarray] = []
            for n, w, x, y in _fields(buf, a, b):
                if n != 1:
                    continue
                if w == 2:
                    if (y - x) % 4:
                        raise Malformed("packed float_list length is not a multiple of 4")
                    chunks.append(np.frombuffer(buf, "<f4", (y - x) // 4, x))
                elif w == 5:
                    chunks.append(np.frombuffer(buf, "<f4", 1, x))
                else:
                    raise Malformed("float_list value with wrong wire type")
            value = np.concatenate(chunks).astype(np.float32) if chunks else np.empty(0, np.float32)
        elif number == 3:
            ints: list[int] = []
            for n, w, x, y in _fields(buf, a, b):
                if n != 1:
                    continue
                if w == 2:
                    packed_varints(buf, x, y, ints)
                elif w == 0:
                    ints.append(x)
                else:
                    raise Malformed("int64_list value with wrong wire type")
            # int64 travels as its two's-complement uint64 varint
            value = np.array([v - (1 << 64) if v >= 1 << 63 else v for v in ints], dtype=np.int64)
    return value


def _decode_features(buf: bytes, pos: int, end: int) -> dict[str, FeatureValue]:
    """tf.train.Features: map<string, Feature> feature = 1."""
    out: dict[str, FeatureValue] = {}
    for number, wire, a, b in _fields(buf, pos, end):
        if number != 1 or wire != 2:
            continue
        key = ""
        value: FeatureValue = []
        for n, w, x, y in _fields(buf, a, b):
            if n == 1 and w == 2:
                key = _text(buf[x:y])
            elif n == 2 and w == 2:
                value = _decode_feature(buf, x, y)
        out[key] = value
    return out


def _decode_feature_lists(buf: bytes, pos: int, end: int) -> dict[str, list[FeatureValue]]:
    """tf.train.FeatureLists: map<string, FeatureList> feature_list = 1; FeatureList: repeated Feature = 1."""
    out: dict[str, list[FeatureValue]] = {}
    for number, wire, a, b in _fields(buf, pos, end):
        if number != 1 or wire != 2:
            continue
        key = ""
        values: list[FeatureValue] = []
        for n, w, x, y in _fields(buf, a, b):
            if n == 1 and w == 2:
                key = _text(buf[x:y])
            elif n == 2 and w == 2:
                values = [_decode_feature(buf, p, q) for m, v, p, q in _fields(buf, x, y) if m == 1 and v == 2]
        out[key] = values
    return out


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Malformed(f"feature key is not UTF-8: {raw[:40]!r}") from exc


def decode_message(
    buf: bytes, pos: int, end: int, context_only: bool = False
) -> tuple[dict[str, FeatureValue], dict[str, list[FeatureValue]] | None]:
    """Example and SequenceExample share field 1 (features / context); only a SequenceExample has
    field 2 (feature_lists). Returns (features, feature_lists or None)."""
    features: dict[str, FeatureValue] = {}
    lists: dict[str, list[FeatureValue]] | None = None
    for number, wire, a, b in _fields(buf, pos, end):
        if wire != 2:
            continue
        if number == 1:
            features.update(_decode_features(buf, a, b))
        elif number == 2 and not context_only:
            lists = lists or {}
            lists.update(_decode_feature_lists(buf, a, b))
    return features, lists


def decode_example(payload: bytes) -> dict[str, FeatureValue]:
    """A serialized tf.train.Example -> {name: list[bytes] | float32 array | int64 array}."""
    payload = bytes(payload)
    try:
        return decode_message(payload, 0, len(payload))[0]
    except Malformed as exc:
        raise VtagError(f"not a valid tf.train.Example: {exc}") from None


def decode_sequence_example(payload: bytes) -> tuple[dict[str, FeatureValue], dict[str, list[FeatureValue]]]:
    """A serialized tf.train.SequenceExample -> (context features, {name: [feature per step]})."""
    payload = bytes(payload)
    try:
        context, lists = decode_message(payload, 0, len(payload))
    except Malformed as exc:
        raise VtagError(f"not a valid tf.train.SequenceExample: {exc}") from None
    return context, lists or {}


def put_varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def put_len(out: bytearray, number: int, content: bytes) -> None:
    put_varint(out, (number << 3) | 2)
    put_varint(out, len(content))
    out += content


def _encode_feature(value) -> bytes:
    """bytes/str or a list of them -> bytes_list; float array/list -> float_list; int -> int64_list."""
    if isinstance(value, (bytes, bytearray, str)):
        value = [value]
    if isinstance(value, np.ndarray):
        arr = value.reshape(-1)
        kind = "f" if arr.dtype.kind == "f" else ("i" if arr.dtype.kind in "iub" else None)
        if arr.dtype.kind in "SO":
            kind, value = "b", list(arr)
        if kind is None:
            raise VtagError(f"cannot store a {arr.dtype} array in a tf.train.Feature")
    else:
        value = list(value)
        if all(isinstance(v, (bytes, bytearray, str)) for v in value):
            kind = "b"
        elif all(isinstance(v, (int, np.integer)) for v in value):
            kind, arr = "i", np.asarray(value, dtype=np.int64)
        elif all(isinstance(v, (int, float, np.integer, np.floating)) for v in value):
            kind, arr = "f", np.asarray(value, dtype=np.float32)
        else:
            raise VtagError("a tf.train.Feature holds bytes, floats or ints, not a mix")
    body = bytearray()
    if kind == "b":
        for item in value:
            put_len(body, 1, item.encode("utf-8") if isinstance(item, str) else bytes(item))
        number = 1
    elif kind == "f":
        if arr.size:
            put_len(body, 1, arr.astype("<f4").tobytes())
        number = 2
    else:
        if arr.size:
            packed = bytearray()
            for v in arr.astype(np.int64).tolist():
                put_varint(packed, v + (1 << 64) if v < 0 else v)
            put_len(body, 1, bytes(packed))
        number = 3
    out = bytearray()
    put_len(out, number, bytes(body))
    return bytes(out)


def _encode_features(features: dict) -> bytes:
    out = bytearray()
    for key, value in features.items():
        entry = bytearray()
        put_len(entry, 1, key.encode("utf-8"))
        put_len(entry, 2, _encode_feature(value))
        put_len(out, 1, bytes(entry))
    return bytes(out)


def encode_example(features: dict) -> bytes:
    """{name: value} -> serialized tf.train.Example (see `_encode_feature` for value types)."""
    out = bytearray()
    put_len(out, 1, _encode_features(features))
    return bytes(out)


def encode_sequence_example(context: dict, feature_lists: dict) -> bytes:
    """(context {name: value}, {name: [value per step]}) -> serialized tf.train.SequenceExample."""
    lists = bytearray()
    for key, steps in feature_lists.items():
        body = bytearray()
        for step in steps:
            put_len(body, 1, _encode_feature(step))
        entry = bytearray()
        put_len(entry, 1, key.encode("utf-8"))
        put_len(entry, 2, bytes(body))
        put_len(lists, 1, bytes(entry))
    out = bytearray()
    put_len(out, 1, _encode_features(context))
    put_len(out, 2, bytes(lists))
    return bytes(out)
