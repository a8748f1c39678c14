"""TensorFlow V1 checkpoints (one file, e.g. AudioSet's `vggish_model.ckpt`) read without TensorFlow.

A V1 checkpoint is a LevelDB-style table (TF's `core/lib/io/table`):
- a 48-byte footer at the end: two block handles (varint offset, varint size) for the metaindex and
  the index block, zero padding, then the fixed64 magic 0xdb4775248b80fb57;
- blocks of prefix-compressed entries (varint shared / unshared key bytes / value size, key suffix,
  value), then uint32 restart offsets and their count; each block is followed by a 1-byte
  compression type and the masked CRC-32C of block + type byte (checked here);
- the index block maps the last key of each data block to that block's handle.
The values are `SavedTensorSlices` protos (`core/util/saved_tensor_slice.proto`): the entry with the
empty key holds the metadata (every tensor's name, shape, dtype and saved slices), every other entry
one slice's data as a `TensorProto` (`float_val` etc., or `tensor_content`).

The file is memory-mapped and every length and offset is checked against the bounds it must lie in
before it is used, so a corrupt or truncated file gives one `VtagError` line, never a huge
allocation or a traceback. Memory use is the arrays asked for plus one data block's worth of checks.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import google_crc32c
import numpy as np

from vtag.errors import VtagError
from vtag.io.tfrecord import Malformed, _fields, _varint

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_BYTES = 48  # two handles of at most 2 x 10 varint bytes each, padded, + 8 bytes of magic
BLOCK_TRAILER_BYTES = 5  # compression type + crc32c
_MASK_DELTA = 0xA282EAD8
_U32 = struct.Struct("<I")
_CRC_CHUNK = 1 << 20

# TensorFlow DataType enum -> (numpy dtype, TensorProto field holding the values, wire form).
# "f4"/"f8" fields are packed fixed-width; "varint" fields are packed varints; half_val carries
# float16 bit patterns as varints.
_DTYPES: dict[int, tuple[str, np.dtype, int, str]] = {
    1: ("float32", np.dtype("<f4"), 5, "fixed"),
    2: ("float64", np.dtype("<f8"), 6, "fixed"),
    3: ("int32", np.dtype("<i4"), 7, "varint"),
    4: ("uint8", np.dtype("u1"), 7, "varint"),
    5: ("int16", np.dtype("<i2"), 7, "varint"),
    6: ("int8", np.dtype("i1"), 7, "varint"),
    9: ("int64", np.dtype("<i8"), 10, "varint"),
    10: ("bool", np.dtype("?"), 11, "varint"),
    17: ("uint16", np.dtype("<u2"), 7, "varint"),
    19: ("float16", np.dtype("<f2"), 13, "varint"),
}


@dataclass(frozen=True)
class TensorInfo:
    """One variable as the checkpoint's metadata describes it."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy name, or "DT_<n>" for a TensorFlow type this reader does not decode
    slices: tuple[tuple[tuple[int, int], ...], ...]  # per saved slice: (start, length) per dim


def _unmask(masked: int) -> int:
    rotated = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rotated >> 17) | (rotated << 15)) & 0xFFFFFFFF


class _Table:
    """The table layer: blocks and their entries, over a read-only mmap."""

    def __init__(self, data: mmap.mmap, path: Path) -> None:
        self.data = data
        self.path = path
        self.size = len(data)

    def fail(self, what: str) -> VtagError:
        return VtagError(f"{self.path}: not a readable TensorFlow V1 checkpoint ({what}); "
                         f"re-download it or save it again with TensorFlow")

    def footer(self) -> tuple[tuple[int, int], tuple[int, int]]:
        if self.size < FOOTER_BYTES:
            raise self.fail(f"{self.size} bytes, shorter than the {FOOTER_BYTES}-byte table footer")
        start = self.size - FOOTER_BYTES
        magic = int.from_bytes(self.data[self.size - 8:], "little")
        if magic != TABLE_MAGIC:
            raise self.fail(f"table magic number {magic:#018x} is not {TABLE_MAGIC:#018x}; "
                            f"truncated, or not a V1 checkpoint (V2 ones are .index + .data files)")
        end = self.size - 8
        try:
            meta_offset, pos = _varint(self.data, start, end)
            meta_size, pos = _varint(self.data, pos, end)
            index_offset, pos = _varint(self.data, pos, end)
            index_size, pos = _varint(self.data, pos, end)
        except Malformed as exc:
            raise self.fail(f"footer: {exc}") from None
        return (meta_offset, meta_size), (index_offset, index_size)

    def block(self, handle: tuple[int, int], what: str) -> memoryview:
        """A block's contents, after bounds and CRC checks."""
        offset, size = handle
        limit = self.size - FOOTER_BYTES
        if offset > limit or size > limit - offset or BLOCK_TRAILER_BYTES > limit - offset - size:
            raise self.fail(f"{what} at offset {offset} with {size} bytes lies beyond the file's "
                            f"{self.size} bytes (truncated?)")
        body = memoryview(self.data)[offset:offset + size]
        kind = self.data[offset + size]
        stored = _U32.unpack_from(self.data, offset + size + 1)[0]
        crc = 0
        for start in range(0, size, _CRC_CHUNK):  # in chunks: the library wants bytes, not views
            crc = google_crc32c.extend(crc, bytes(body[start:start + _CRC_CHUNK]))
        crc = google_crc32c.extend(crc, bytes([kind]))
        if crc != _unmask(stored):
            raise self.fail(f"{what} at offset {offset} fails its CRC-32C check (corrupt)")
        if kind != 0:
            raise self.fail(f"{what} is compressed (type {kind}); TensorFlow writes checkpoints "
                            f"uncompressed, so this file was made by something else")
        return body

    def entries(self, block: memoryview, what: str) -> Iterator[tuple[bytes, memoryview]]:
        """(key, value) pairs of a block, keys rebuilt from their shared prefixes."""
        size = len(block)
        if size < 4:
            raise self.fail(f"{what} has {size} bytes, too short for its restart count")
        restarts = _U32.unpack_from(block, size - 4)[0]
        if restarts > (size - 4) // 4:
            raise self.fail(f"{what} claims {restarts} restart points in {size} bytes")
        end = size - 4 - 4 * restarts
        raw = block
        pos = 0
        key = b""
        try:
            while pos < end:
                shared, pos = _varint(raw, pos, end)
                unshared, pos = _varint(raw, pos, end)
                value_size, pos = _varint(raw, pos, end)
                if shared > len(key) or unshared > end - pos or value_size > end - pos - unshared:
                    raise Malformed(f"an entry at byte {pos} runs past the end of its block")
                key = key[:shared] + bytes(raw[pos:pos + unshared])
                pos += unshared
                yield key, raw[pos:pos + value_size]
                pos += value_size
        except Malformed as exc:
            raise self.fail(f"{what}: {exc}") from None


def _handle(value: memoryview, table: _Table) -> tuple[int, int]:
    try:
        offset, pos = _varint(value, 0, len(value))
        size, _ = _varint(value, pos, len(value))
    except Malformed as exc:
        raise table.fail(f"index entry: {exc}") from None
    return offset, size


def _shape(buf, pos: int, end: int) -> tuple[int, ...]:
    """TensorShapeProto: repeated Dim dim = 2 {int64 size = 1}; unknown_rank = 3."""
    dims = []
    for number, wire, a, b in _fields(buf, pos, end):
        if number == 2 and wire == 2:
            size = 0
            for n2, w2, v, _ in _fields(buf, a, b):
                if n2 == 1 and w2 == 0:
                    size = v - (1 << 64) if v >= 1 << 63 else v
            if size < 0:
                raise Malformed(f"tensor dimension {size} is not a known size")
            dims.append(size)
    return tuple(dims)


def _slice(buf, pos: int, end: int, shape: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """TensorSliceProto: repeated Extent extent = 1 {int64 start = 1; int64 length = 2}; an extent
    without a length (and a slice without extents) covers the whole dimension."""
    extents = []
    for number, wire, a, b in _fields(buf, pos, end):
        if number == 1 and wire == 2:
            start, length = 0, None
            for n2, w2, v, _ in _fields(buf, a, b):
                if n2 == 1 and w2 == 0:
                    start = v
                elif n2 == 2 and w2 == 0:
                    length = v
            extents.append((start, length))
    if not extents:
        extents = [(0, None)] * len(shape)
    if len(extents) != len(shape):
        raise Malformed(f"a slice of {len(extents)} dimensions for a tensor of shape {shape}")
    out = []
    for (start, length), dim in zip(extents, shape):
        length = dim - start if length is None else length
        if start > dim or length > dim - start:
            raise Malformed(f"slice [{start}, {start + length}) lies outside a dimension of {dim}")
        out.append((start, length))
    return tuple(out)


def _tensor_values(buf, pos: int, end: int, dtype_code: int, count: int) -> np.ndarray:
    """The values of a TensorProto as a flat array of `count` elements."""
    _, dtype, field, form = _DTYPES[dtype_code]
    content = None
    packed: list[tuple[int, int]] = []
    scalars: list[int] = []
    for number, wire, a, b in _fields(buf, pos, end):
        if number == 4 and wire == 2:
            content = (a, b)
        elif number == field and wire == 2:
            packed.append((a, b))
        elif number == field:  # an unpacked repeated field: one value per tag
            scalars.append(a if wire == 0 else int.from_bytes(bytes(buf[a:b]), "little"))
    if content is not None:
        a, b = content
        if b - a != count * dtype.itemsize:
            raise Malformed(f"tensor_content has {b - a} bytes for {count} values of {dtype.name}")
        return np.frombuffer(buf[a:b], dtype=dtype)  # a view: the caller copies it into place
    if form == "fixed":
        if len(packed) == 1 and not scalars and (packed[0][1] - packed[0][0]) == count * dtype.itemsize:
            return np.frombuffer(buf[packed[0][0]:packed[0][1]], dtype=dtype)
        chunks = [np.frombuffer(buf[a:b], dtype=dtype) for a, b in packed if (b - a) % dtype.itemsize == 0]
        if len(chunks) != len(packed):
            raise Malformed(f"packed {dtype.name} values of a length not a multiple of {dtype.itemsize}")
        if scalars:
            width = dtype.itemsize
            chunks.append(np.frombuffer(b"".join(s.to_bytes(width, "little") for s in scalars), dtype=dtype))
        values = np.concatenate(chunks) if chunks else np.zeros(0, dtype)
    else:
        ints = list(scalars)
        for a, b in packed:
            p = a
            while p < b:
                v, p = _varint(buf, p, b)
                ints.append(v)
        raw = np.array([v - (1 << 64) if v >= 1 << 63 else v for v in ints], dtype=np.int64)
        values = raw.astype(np.uint16).view(np.float16) if dtype_code == 19 else raw.astype(dtype)
    if values.size != count:
        raise Malformed(f"{values.size} values for a slice of {count} elements")
    return values.astype(dtype, copy=False)


class CheckpointReader:
    """A V1 checkpoint file: `tensors` (metadata) and `read(names)` (arrays). Use as a context manager
    or call `close()`; the file stays memory-mapped in between."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            with open(self.path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size == 0:
                    raise VtagError(f"{self.path}: empty file, not a TensorFlow V1 checkpoint")
                self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as exc:
            raise VtagError(f"{self.path}: cannot read checkpoint ({exc.strerror or exc})") from None
        self._table = _Table(self._map, self.path)
        try:
            self._blocks = self._index()
            self.tensors = self._meta()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        try:
            self._map.close()
        except BufferError:
            pass  # an array view is still alive (e.g. in a traceback); the mmap closes when it goes

    def __enter__(self) -> "CheckpointReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _index(self) -> list[tuple[bytes, tuple[int, int]]]:
        _, index = self._table.footer()
        block = self._table.block(index, "index block")
        return [(key, _handle(value, self._table)) for key, value in self._table.entries(block, "index block")]

    def _entries(self) -> Iterator[tuple[bytes, memoryview]]:
        for number, (_, handle) in enumerate(self._blocks):
            what = f"data block {number}"
            yield from self._table.entries(self._table.block(handle, what), what)

    def _meta(self) -> dict[str, TensorInfo]:
        for key, value in self._entries():
            if key != b"":
                break
            try:
                return self._parse_meta(value)
            except Malformed as exc:
                raise self._table.fail(f"metadata: {exc}") from None
        raise self._table.fail("no metadata entry (the empty key) at the start of the table")

    def _parse_meta(self, value: memoryview) -> dict[str, TensorInfo]:
        """SavedTensorSlices.meta = 1 -> SavedTensorSliceMeta.tensor = 1 -> SavedSliceMeta
        {string name = 1; TensorShapeProto shape = 2; DataType type = 3; repeated slice = 4}."""
        tensors = {}
        for number, wire, a, b in _fields(value, 0, len(value)):
            if number != 1 or wire != 2:
                continue
            for n2, w2, c, d in _fields(value, a, b):
                if n2 != 1 or w2 != 2:
                    continue
                name, shape, dtype_code, slice_spans = "", (), 0, []
                for n3, w3, e, f in _fields(value, c, d):
                    if n3 == 1 and w3 == 2:
                        name = bytes(value[e:f]).decode("utf-8", "replace")
                    elif n3 == 2 and w3 == 2:
                        shape = _shape(value, e, f)
                    elif n3 == 3 and w3 == 0:
                        dtype_code = e
                    elif n3 == 4 and w3 == 2:
                        slice_spans.append((e, f))
                slices = tuple(_slice(value, e, f, shape) for e, f in slice_spans)
                dtype = _DTYPES[dtype_code][0] if dtype_code in _DTYPES else f"DT_{dtype_code}"
                tensors[name] = TensorInfo(name, shape, dtype, slices)
        return tensors

    def read(self, names: list[str] | None = None) -> dict[str, np.ndarray]:
        """The named tensors (all by default) as NumPy arrays, assembled from their saved slices."""
        wanted = list(self.tensors) if names is None else list(names)
        missing = [n for n in wanted if n not in self.tensors]
        if missing:
            raise VtagError(f"{self.path}: no tensor named {', '.join(missing)} in this checkpoint "
                            f"(it holds {len(self.tensors)}: {', '.join(list(self.tensors)[:6])}...)")
        for name in wanted:
            info = self.tensors[name]
            if info.dtype.startswith("DT_"):
                raise VtagError(f"{self.path}: tensor {name} has TensorFlow type {info.dtype}, "
                                f"which vtag does not read")
        for name in wanted:
            count = math.prod(self.tensors[name].shape)
            if count > self._table.size:  # every stored value takes at least one byte
                raise self._table.fail(f"tensor {name} claims shape {self.tensors[name].shape}, "
                                       f"more values than the file has bytes")
        out = {n: np.zeros(self.tensors[n].shape, dtype=_np_dtype(self.tensors[n].dtype)) for n in wanted}
        covered = {n: 0 for n in wanted}
        for key, value in self._entries():
            if key == b"":
                continue
            try:
                self._fill(value, out, covered)
            except Malformed as exc:
                raise self._table.fail(f"tensor data: {exc}") from None
        short = [n for n in wanted if covered[n] < out[n].size]
        if short:
            raise self._table.fail(f"tensor data missing for {', '.join(short)}")
        return out

    def _fill(self, value: memoryview, out: dict[str, np.ndarray], covered: dict[str, int]) -> None:
        """SavedTensorSlices.data = 2 -> SavedSlice {string name = 1; slice = 2; TensorProto data = 3}."""
        for number, wire, a, b in _fields(value, 0, len(value)):
            if number != 2 or wire != 2:
                continue
            name, slice_span, data_span = None, None, None
            for n2, w2, c, d in _fields(value, a, b):
                if n2 == 1 and w2 == 2:
                    name = bytes(value[c:d]).decode("utf-8", "replace")
                elif n2 == 2 and w2 == 2:
                    slice_span = (c, d)
                elif n2 == 3 and w2 == 2:
                    data_span = (c, d)
            if name not in out or data_span is None:
                continue
            info = self.tensors[name]
            extents = _slice(value, *slice_span, info.shape) if slice_span else tuple((0, n) for n in info.shape)
            count = math.prod(length for _, length in extents)
            code = next(k for k, v in _DTYPES.items() if v[0] == info.dtype)
            values = _tensor_values(value, *data_span, code, count)
            index = tuple(slice(start, start + length) for start, length in extents)
            out[name][index] = values.reshape([length for _, length in extents])
            covered[name] += count


def _np_dtype(name: str) -> np.dtype:
    return next(v[1] for v in _DTYPES.values() if v[0] == name)


def read_checkpoint(path: str | os.PathLike, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """Every tensor (or the named ones) of a TensorFlow V1 checkpoint file."""
    with CheckpointReader(path) as reader:
        return reader.read(names)


def checkpoint_tensors(path: str | os.PathLike) -> dict[str, TensorInfo]:
    """Names, shapes and dtypes of a V1 checkpoint's tensors, without reading their values."""
    with CheckpointReader(path) as reader:
        return dict(reader.tensors)


def is_v1_checkpoint(path: str | os.PathLike) -> bool:
    """Whether a file ends in the table magic number (a cheap sniff; reading it checks the rest)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() < FOOTER_BYTES:
                return False
            fh.seek(-8, os.SEEK_END)
            return int.from_bytes(fh.read(8), "little") == TABLE_MAGIC
    except OSError:
        return False
