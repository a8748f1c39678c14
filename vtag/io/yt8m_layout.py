"""The byte layout TensorFlow gives a video-level YT8M Example, matched directly.

Records written by TensorFlow (all of the YT8M release) lay out their fields in one canonical way;
`fast_video_entry` recognises that layout with a handful of prefix matches and returns where the id,
labels and floats are, so readers can copy them without a general protobuf decode. Anything laid out
another way returns None and takes the general decoder (`vtag.io.tfrecord`). Label varints of many
records are decoded at once with numpy (`decode_varint_chunks`).
"""

from __future__ import annotations

import numpy as np

from vtag.io.tfrecord import Malformed, packed_varints, put_len, put_varint

RGB_DIM = 1024
AUDIO_DIM = 128


def _float_entry_header(key: bytes, count: int) -> bytes:
    """The bytes TF writes before the floats of a `count`-float map entry of tf.train.Features:
    entry tag+length, key, value tag+length, float_list tag+length, packed tag+length."""
    packed = bytearray([0x0A])
    put_varint(packed, 4 * count)
    feature = bytearray([0x12])
    put_varint(feature, len(packed) + 4 * count)
    feature += packed
    body = bytearray()
    put_len(body, 1, key)
    body.append(0x12)
    put_varint(body, len(feature) + 4 * count)
    body += feature
    header = bytearray([0x0A])
    put_varint(header, len(body) + 4 * count)
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
RGB_BYTES = 4 * RGB_DIM
AUDIO_BYTES = 4 * AUDIO_DIM
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
KEY_ID, KEY_VIDEO_ID, KEY_LABELS = 0, 1, 2
# Smallest possible framed video-level record; bounds the record count of a byte count from above.
MIN_RECORD_BYTES = 16 + len(_RGB_HEADER) + RGB_BYTES + len(_AUDIO_HEADER) + AUDIO_BYTES


def fast_video_entry(data: bytes, start: int, end: int):
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
            if what == KEY_LABELS:
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
            pos = rgb_at + RGB_BYTES
        elif startswith(_AUDIO_HEADER, pos):
            if audio_at >= 0:
                return None
            audio_at = pos + _AUDIO_SKIP
            pos = audio_at + AUDIO_BYTES
        else:
            return None
    if pos != end or rgb_at < 0 or audio_at < 0 or vid is None:
        return None
    return key, vid, labels, rgb_at, audio_at


def label_varint_problem(packed: bytes, limit: int) -> str:
    """The message for packed labels that `decode_varint_chunks` rejected."""
    values: list[int] = []
    try:
        packed_varints(packed, 0, len(packed), values)
    except Malformed as exc:
        return f"labels: {exc}"
    wrong = next((v for v in values if v >= limit), max(values, default=0))
    return f"label {wrong - (1 << 64) if wrong >= 1 << 63 else wrong} outside the vocabulary (0..{limit - 1})"


def decode_varint_chunks(chunks: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
        values, starts, inner_ok = decode_varint_chunks([c if good else b"" for c, good in zip(chunks, ok)])
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
            values, starts, inner_ok = decode_varint_chunks([c if good else b"" for c, good in zip(chunks, ok)])
            return values, starts, ok & inner_ok
    if not ends.size:
        return np.zeros(0, dtype=np.int64), value_start, ok
    within = np.arange(b.size) - np.repeat(starts, sizes)
    values = np.add.reduceat((b & 0x7F).astype(np.int64) << (7 * within), starts)
    return values, value_start, ok

