"""TensorBoard event files without TensorFlow or tensorboard.

An event file is a TFRecord file whose records are `tensorflow.Event` protos: the first holds
`file_version: "brain.Event:2"`, each later one a `wall_time`, a `step` and a `Summary` of
(tag, simple_value) pairs. The fields used (from tensorflow/core/util/event.proto and
summary.proto): Event.wall_time = 1 (double), Event.step = 2 (int64), Event.file_version = 3
(string), Event.summary = 5; Summary.value = 1; Summary.Value.tag = 1, Summary.Value.simple_value = 2
(float). `read_scalars` decodes them back (tests, and `vtag report` when metrics.csv is missing).

The file is append-only, as TensorBoard expects (it tails growing files): each event is one framed
record written with a single `write` and fsynced; a torn last record (a kill mid-write) is skipped on
read, by TensorBoard as here.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import time
from pathlib import Path

from vtag.io.tfrecord import _U32, _U64, _fields, masked_crc32c, put_len, put_varint

FILE_VERSION = "brain.Event:2"


def _frame(payload: bytes) -> bytes:
    header = _U64.pack(len(payload))
    return header + _U32.pack(masked_crc32c(header)) + payload + _U32.pack(masked_crc32c(payload))


def encode_event(wall_time: float, step: int | None = None, scalars: dict[str, float] | None = None,
                 file_version: str | None = None) -> bytes:
    out = bytearray()
    put_varint(out, (1 << 3) | 1)
    out += struct.pack("<d", wall_time)
    if step is not None:
        put_varint(out, 2 << 3)
        put_varint(out, step & 0xFFFFFFFFFFFFFFFF)
    if file_version is not None:
        put_len(out, 3, file_version.encode())
    if scalars:
        summary = bytearray()
        for tag, value in scalars.items():
            item = bytearray()
            put_len(item, 1, tag.encode())
            put_varint(item, (2 << 3) | 5)
            item += struct.pack("<f", float(value))
            put_len(summary, 1, bytes(item))
        put_len(out, 5, bytes(summary))
    return bytes(out)


_WRITERS = itertools.count()


def event_file_name(when: float | None = None) -> str:
    # TensorBoard finds files by the "events.out.tfevents." prefix; the rest keeps them unique, also
    # for two runs started in one second by one process
    return (f"events.out.tfevents.{int(when or time.time())}.{socket.gethostname()}.{os.getpid()}."
            f"{next(_WRITERS)}.vtag")


class EventWriter:
    """Appends scalar events to one new event file in `folder` (created on the first write)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path: Path | None = None

    def _append(self, payload: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, _frame(payload))
            os.fsync(fd)
        finally:
            os.close(fd)

    def scalars(self, step: int, values: dict[str, float], wall_time: float | None = None) -> None:
        wall_time = time.time() if wall_time is None else wall_time
        if self.path is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.path = self.folder / event_file_name(wall_time)
            self._append(encode_event(wall_time, file_version=FILE_VERSION))
        self._append(encode_event(wall_time, step, values))


def read_scalars(path: str | Path) -> tuple[str | None, list[tuple[int, str, float]]]:
    """(file_version, [(step, tag, value)]) of one event file; a torn last record is ignored."""
    from vtag.io.tfrecord import iter_tfrecord

    version, out = None, []
    payloads = list(iter_tfrecord(path, skip_bad=True))  # a torn tail: keep the whole records before it
    for payload in payloads:
        step = 0
        values = []
        for number, wire, a, b in _fields(payload, 0, len(payload)):
            if number == 2 and wire == 0:
                step = a - (1 << 64) if a >= 1 << 63 else a
            elif number == 3 and wire == 2:
                version = payload[a:b].decode()
            elif number == 5 and wire == 2:
                for n, w, va, vb in _fields(payload, a, b):
                    if n != 1 or w != 2:
                        continue
                    tag, value = None, None
                    for fn, fw, fa, fb in _fields(payload, va, vb):
                        if fn == 1 and fw == 2:
                            tag = payload[fa:fb].decode()
                        elif fn == 2 and fw == 5:
                            value = struct.unpack("<f", payload[fa:fb])[0]
                    if tag is not None and value is not None:
                        values.append((tag, value))
        out.extend((step, tag, value) for tag, value in values)
    return version, out

