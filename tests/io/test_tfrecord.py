"""TFRecord framing (layout, CRCs, atomic writes, bad frames) and the tf.train.Example /
SequenceExample wire-format codec."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest

from vtag.errors import VtagError
from vtag.io.tfrecord import (
    ReadStats,
    decode_example,
    decode_sequence_example,
    encode_example,
    encode_sequence_example,
    iter_tfrecord,
    masked_crc32c,
    write_tfrecord,
)


def test_masked_crc32c_known_value():
    # CRC-32C("123456789") = 0xE3069283 (RFC 3720 check value), then TFRecord's mask
    crc = 0xE3069283
    assert masked_crc32c(b"123456789") == ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def test_tfrecord_roundtrip_and_layout(tmp_path):
    payloads = [b"", b"x", os.urandom(1000)]
    path = tmp_path / "raw.tfrecord"
    assert write_tfrecord(path, payloads) == 3
    assert list(iter_tfrecord(path)) == payloads
    data = path.read_bytes()
    assert len(data) == sum(16 + len(p) for p in payloads)
    assert struct.unpack_from("<Q", data, 16 + 17)[0] == 1000  # third record's length field
    assert not list(tmp_path.glob(".*tmp"))  # no temp file left behind
    empty = tmp_path / "empty.tfrecord"
    assert write_tfrecord(empty, []) == 0 and empty.stat().st_size == 0
    assert list(iter_tfrecord(empty)) == []


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    path = tmp_path / "keep.tfrecord"
    write_tfrecord(path, [b"old"])

    def failing():
        yield b"new"
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_tfrecord(path, failing())
    assert list(iter_tfrecord(path)) == [b"old"]
    assert [p.name for p in tmp_path.iterdir()] == ["keep.tfrecord"]


def test_atomic_write_gives_the_file_the_umask_mode(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        write_tfrecord(tmp_path / "shared.tfrecord", [b"x"])
        os.umask(0o077)
        write_tfrecord(tmp_path / "private.tfrecord", [b"x"])
    finally:
        os.umask(old)
    assert (tmp_path / "shared.tfrecord").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
    assert (tmp_path / "private.tfrecord").stat().st_mode & 0o777 == 0o600


def test_example_roundtrip_all_feature_types():
    features = {
        "b": [b"abc", b"", "text"],
        "f": np.array([1.5, -2.25, np.inf], dtype=np.float32),
        "i": np.array([0, 1, 127, 128, 2**40, -1, -(2**63)], dtype=np.int64),
        "empty": [],
    }
    got = decode_example(encode_example(features))
    assert got["b"] == [b"abc", b"", b"text"]
    assert got["f"].dtype == np.float32 and np.array_equal(got["f"], features["f"])
    assert got["i"].dtype == np.int64 and np.array_equal(got["i"], features["i"])
    assert got["empty"] == []


def test_unpacked_repeated_scalars_decode_like_packed():
    # protobuf parsers must accept repeated scalars unpacked too: float as wire type 5, int64 as 0
    def msg(number, content):
        return bytes([number << 3 | 2, len(content)]) + content

    floats = b"".join(bytes([0x0D]) + struct.pack("<f", v) for v in (1.0, 2.5))
    ints = bytes([0x08, 5, 0x08, 0xAC, 0x02])  # 5, 300
    features = msg(1, msg(1, b"f") + msg(2, msg(2, floats))) + msg(1, msg(1, b"i") + msg(2, msg(3, ints)))
    got = decode_example(msg(1, features))
    assert got["f"].tolist() == [1.0, 2.5] and got["i"].tolist() == [5, 300]


def test_sequence_example_roundtrip():
    context = {"id": [b"x"], "labels": np.array([3, 400])}
    lists = {"rgb": [[b"\x00\x01"], [b"\x02\x03"]], "n": [np.array([1, 2]), np.array([3])]}
    got_context, got_lists = decode_sequence_example(encode_sequence_example(context, lists))
    assert got_context["id"] == [b"x"] and got_context["labels"].tolist() == [3, 400]
    assert got_lists["rgb"] == [[b"\x00\x01"], [b"\x02\x03"]]
    assert [v.tolist() for v in got_lists["n"]] == [[1, 2], [3]]


def test_garbage_payload_is_an_error():
    with pytest.raises(VtagError, match="not a valid tf.train.Example"):
        decode_example(b"\x0a\xff\xff\xff\xff\x0f")



def test_garbage_sequence_example_is_an_error():
    with pytest.raises(VtagError, match="not a valid tf.train.SequenceExample"):
        decode_sequence_example(b"\x12\x05\x0a")


def frame_offsets(data: bytes) -> list[int]:
    offsets = [0]
    while offsets[-1] < len(data):
        offsets.append(offsets[-1] + 16 + struct.unpack_from("<Q", data, offsets[-1])[0])
    return offsets


def test_bad_frames_raise_or_are_skipped(tmp_path):
    payloads = [bytes([i]) * (50 + i) for i in range(5)]
    clean = tmp_path / "clean.tfrecord"
    write_tfrecord(clean, payloads)
    data = clean.read_bytes()
    at = frame_offsets(data)

    flipped = bytearray(data)
    flipped[at[1] + 12 + 7] ^= 0x01  # inside record 1's payload: only that record is lost
    header = bytearray(data)
    header[at[3]] ^= 0x01  # record 3's length: nothing after it can be framed
    first = bytearray(data)
    first[0] ^= 0x01
    cases = {
        "payload": (bytes(flipped), 1, "CRC mismatch in the record data", payloads[:1] + payloads[2:]),
        "length": (bytes(header), 3, "CRC mismatch in the record length", payloads[:3]),
        "first": (bytes(first), 0, "CRC mismatch in the first record's length: not an uncompressed", []),
        "cut": (data[: at[4] + 20], 4, "truncated: record says", payloads[:4]),
        "header": (data[: at[2] + 5], 2, "truncated: 5 bytes left", payloads[:2]),
    }
    for name, (content, index, words, survivors) in cases.items():
        path = tmp_path / f"{name}.tfrecord"
        path.write_bytes(content)
        with pytest.raises(VtagError) as info:
            list(iter_tfrecord(path))
        message = str(info.value)
        assert str(path) in message and f"record {index}: {words}" in message and "\n" not in message, name
        stats = ReadStats()
        assert list(iter_tfrecord(path, skip_bad=True, stats=stats)) == survivors, name
        assert (stats.files, stats.skipped) == (1, 1) and f"record {index}:" in stats.errors[0], name


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(VtagError, match="missing.tfrecord: cannot read"):
        list(iter_tfrecord(tmp_path / "missing.tfrecord"))
    with pytest.raises(VtagError, match="does not exist"):
        write_tfrecord(tmp_path / "no" / "dir.tfrecord", [b"x"])
