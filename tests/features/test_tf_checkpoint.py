"""The TensorFlow V1 checkpoint reader, without TensorFlow.

tests/features/fixtures/tf_v1_small.ckpt was written by TensorFlow 2.21's own V1 saver
(`tf.compat.v1.train.Saver(write_version=SaverDef.V1)`) by tests/features/fixtures/make_tf_v1_checkpoint.py,
which also stored the variables' values in tf_v1_small_expected.npz ("/" in names as "|"): float32,
float64, float16, int32, int64 (a scalar), uint8, bool, an empty tensor and a variable partitioned
into three slices.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vtag.errors import VtagError
from vtag.features.tf_checkpoint import FOOTER_BYTES, TABLE_MAGIC, CheckpointReader, checkpoint_tensors, is_v1_checkpoint, read_checkpoint

FIXTURES = Path(__file__).parent / "fixtures"
CKPT = FIXTURES / "tf_v1_small.ckpt"


def _expected() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "tf_v1_small_expected.npz", allow_pickle=False) as npz:
        return {k.replace("|", "/"): npz[k] for k in npz.files}


def test_reads_every_tensor_exactly_with_its_dtype_and_shape():
    expected = _expected()
    got = read_checkpoint(CKPT)
    assert set(got) == set(expected)
    for name, want in expected.items():
        assert got[name].dtype == want.dtype, name
        assert got[name].shape == want.shape, name
        np.testing.assert_array_equal(got[name], want, err_msg=name)
    assert got["global_step"] == -123456789012  # a negative int64 scalar survives the varint


def test_metadata_lists_shapes_dtypes_and_slices_without_reading_values():
    tensors = checkpoint_tensors(CKPT)
    assert tensors["vggish/conv1/weights"].shape == (3, 3, 1, 4)
    assert tensors["vggish/conv1/weights"].dtype == "float32"
    assert tensors["scope/matrix64"].dtype == "float64"
    # The partitioned variable is stored as three row slices that the reader puts back together.
    assert tensors["parts/sliced"].slices == (((0, 2), (0, 2)), ((2, 2), (0, 2)), ((4, 1), (0, 2)))


def test_reads_only_the_named_tensors():
    with CheckpointReader(CKPT) as reader:
        got = reader.read(["flags", "parts/sliced"])
        assert sorted(got) == ["flags", "parts/sliced"]
        np.testing.assert_array_equal(got["parts/sliced"], _expected()["parts/sliced"])
        with pytest.raises(VtagError, match="no tensor named nope"):
            reader.read(["nope"])


def test_is_v1_checkpoint_sniffs_the_magic(tmp_path):
    assert is_v1_checkpoint(CKPT)
    other = tmp_path / "x.ckpt"
    other.write_bytes(b"\0" * 100)
    assert not is_v1_checkpoint(other) and not is_v1_checkpoint(tmp_path / "absent")


def _one_line_error(path: Path) -> str:
    with pytest.raises(VtagError) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_every_truncation_is_one_line_error(tmp_path):
    data = CKPT.read_bytes()
    path = tmp_path / "cut.ckpt"
    for size in range(len(data)):
        path.write_bytes(data[:size])
        _one_line_error(path)


def test_every_single_byte_corruption_is_caught_or_harmless(tmp_path):
    """Flipping any byte either gives a one-line VtagError or (footer padding, for instance) changes
    nothing that is read: the values never come back wrong."""
    data = CKPT.read_bytes()
    expected = _expected()
    path = tmp_path / "flipped.ckpt"
    caught = 0
    for pos in range(len(data)):
        path.write_bytes(data[:pos] + bytes([data[pos] ^ 0x5A]) + data[pos + 1:])
        try:
            got = read_checkpoint(path)
        except VtagError as exc:
            assert "\n" not in str(exc)
            caught += 1
            continue
        for name, want in expected.items():
            np.testing.assert_array_equal(got[name], want, err_msg=f"byte {pos} flipped")
    assert caught > len(data) * 0.9


def test_lengths_beyond_the_file_are_refused_not_trusted(tmp_path):
    data = CKPT.read_bytes()

    def varint(n: int) -> bytes:
        out = bytearray()
        while n >= 0x80:
            out.append(n & 0x7F | 0x80)
            n >>= 7
        return bytes(out + bytes([n]))

    def with_footer(index_offset: int, index_size: int) -> bytes:
        handles = varint(0) + varint(0) + varint(index_offset) + varint(index_size)
        return data[:-FOOTER_BYTES] + handles.ljust(FOOTER_BYTES - 8, b"\0") + TABLE_MAGIC.to_bytes(8, "little")

    path = tmp_path / "huge.ckpt"
    for offset, size in ((0, 1 << 40), (1 << 50, 10), (len(data) - 10, 20)):
        path.write_bytes(with_footer(offset, size))
        assert "beyond the file" in _one_line_error(path)


def test_not_a_checkpoint_errors(tmp_path):
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    assert "empty file" in _one_line_error(empty)
    v2_index = tmp_path / "model.ckpt.index"
    v2_index.write_bytes(b"\x01" * 200)
    assert "magic number" in _one_line_error(v2_index)
    assert "cannot read" in _one_line_error(tmp_path / "absent.ckpt")
