"""YT8M readers and writers (both schemas, both levels, the fast batched reader), bad records, and the
real release files (YT8M 2018/2017, frame-level, AudioSet) where ../shared/data is present. The framing
and codec underneath have their own tests in test_tfrecord.py."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vtag.cli import app
from vtag.errors import VtagError
from vtag.io.fast_reader import read_video_level_arrays
from vtag.io.inspect import inspect_file, scan_labels
from vtag.io.paths import expand_paths
from vtag.io.records import ReadStats, YT8MRecord, dequantize_bytes, pool_frames, quantize_floats, read_audioset_records, read_records, write_records
from vtag.io.tfrecord import encode_example, iter_tfrecord, write_tfrecord


def video_records(n: int, seed: int = 0, schema: str = "2018", labelled: bool = True) -> list[YT8MRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        # labels above 127 take two varint bytes; include some, and an empty label list
        labels = np.sort(rng.choice(3862, size=i % 5, replace=False)).astype(np.int64) if labelled else None
        out.append(YT8MRecord(f"v{seed}_{i:04d}", labels, rng.standard_normal(1024).astype(np.float32),
                              rng.standard_normal(128).astype(np.float32), "video", schema))
    return out


def assert_same(a: YT8MRecord, b: YT8MRecord) -> None:
    assert a.id == b.id and a.schema == b.schema and a.level == b.level
    assert (a.labels is None) == (b.labels is None)
    if a.labels is not None:
        assert np.array_equal(a.labels, b.labels)
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.audio, b.audio)


# ---- YT8M records --------------------------------------------------------------------------------


def test_empty_file_reads_as_no_records(tmp_path):
    empty = tmp_path / "empty.tfrecord"
    write_tfrecord(empty, [])
    assert list(read_records(empty)) == []
    arrays = read_video_level_arrays(empty)
    assert len(arrays) == 0 and arrays.rgb.shape == (0, 1024)


@pytest.mark.parametrize("schema", ["2018", "2017"])
def test_video_level_roundtrip_both_readers(tmp_path, schema):
    records = video_records(40, seed=1, schema=schema) + video_records(3, seed=2, schema=schema, labelled=False)
    path = tmp_path / "v.tfrecord"
    assert write_records(path, records) == 43
    got = list(read_records(path))
    for a, b in zip(records, got):
        assert_same(a, b)
    arrays = read_video_level_arrays(path)
    assert arrays.ids == [r.id for r in records] and arrays.schema == [schema] * 43
    assert np.array_equal(arrays.rgb, np.stack([r.rgb for r in records]))
    assert np.array_equal(arrays.audio, np.stack([r.audio for r in records]))
    for a, b in zip(records, arrays.labels):
        assert (a.labels is None and b is None) or np.array_equal(a.labels, b)
    key = b"video_id" if schema == "2017" else b"\n\x02id"
    assert key in path.read_bytes()
    hot = arrays.multi_hot(3862)
    assert hot.shape == (43, 3862) and hot.sum() == sum(len(r.labels) for r in records if r.labels is not None)


def test_non_canonical_layout_takes_the_general_decoder(tmp_path):
    # an extra feature and a different key order: the fast reader must still agree with read_records
    rng = np.random.default_rng(3)
    payloads, expected = [], []
    for i in range(5):
        rgb, audio = rng.standard_normal(1024).astype(np.float32), rng.standard_normal(128).astype(np.float32)
        labels = np.array([i, 3000 + i], np.int64)
        payloads.append(encode_example({"mean_audio": audio, "extra": [b"x"], "labels": labels,
                                        "mean_rgb": rgb, "id": [f"n{i}"]}))
        expected.append(YT8MRecord(f"n{i}", labels, rgb, audio))
    path = tmp_path / "odd.tfrecord"
    write_tfrecord(path, payloads)
    arrays = read_video_level_arrays(path)
    for i, rec in enumerate(read_records(path)):
        assert_same(rec, expected[i])
        assert arrays.ids[i] == rec.id and np.array_equal(arrays.labels[i], rec.labels)
        assert np.array_equal(arrays.rgb[i], rec.rgb) and np.array_equal(arrays.audio[i], rec.audio)


def test_frame_level_roundtrip_quantizes_and_dequantizes(tmp_path):
    rng = np.random.default_rng(4)
    q_rgb = rng.integers(0, 256, (7, 1024), dtype=np.uint8)
    q_audio = rng.integers(0, 256, (7, 128), dtype=np.uint8)
    floats = rng.uniform(-3, 3, (5, 1024)).astype(np.float32)
    records = [
        YT8MRecord("q", np.array([1, 2]), q_rgb, q_audio, "frame"),  # already quantized: stored as is
        YT8MRecord("f", None, floats, np.zeros((5, 128), np.float32), "frame", "2017"),
    ]
    path = tmp_path / "frames.tfrecord"
    write_records(path, records, level="frame")
    a, b = read_records(path)
    assert a.level == "frame" and a.num_frames == 7 and a.labels.tolist() == [1, 2]
    assert np.array_equal(a.rgb, q_rgb.astype(np.float32) * np.float32(4 / 255) + np.float32(4 / 512 - 2))
    assert np.array_equal(a.audio, dequantize_bytes(q_audio))
    assert b.schema == "2017" and b.labels is None and b.rgb.shape == (5, 1024)
    expected_q = np.round((np.clip(floats.astype(np.float64), -2, 2) + 2) * 255 / 4).astype(np.uint8)
    assert np.array_equal(quantize_floats(floats), expected_q)
    assert np.array_equal(b.rgb, dequantize_bytes(expected_q))
    # rounding costs up to half a step (2/255); Google's Dequantize adds a 4/512 bias on top
    assert np.abs(b.rgb - np.clip(floats, -2, 2)).max() <= 2 / 255 + 4 / 512 + 1e-6
    with pytest.raises(VtagError, match="frame-level record without video-level means"):
        read_video_level_arrays(path, skip_bad=True)  # the wrong reader is never "skipped"


def test_write_rejects_wrong_shapes(tmp_path):
    frame = YT8MRecord("x", None, np.zeros((3, 1024), np.float32), np.zeros((3, 128), np.float32), "frame")
    with pytest.raises(VtagError, match="video-level records need"):
        write_records(tmp_path / "a.tfrecord", [frame], level="video")
    with pytest.raises(VtagError, match="level must be"):
        write_records(tmp_path / "a.tfrecord", [frame], level="frames")
    assert not list(tmp_path.iterdir())


def test_pool_frames():
    rng = np.random.default_rng(5)
    rgb, audio = rng.standard_normal((9, 1024)).astype(np.float32), rng.standard_normal((9, 128)).astype(np.float32)
    v, a = pool_frames(rgb, audio, "mean")
    assert v.shape == (1024,) and a.shape == (128,) and v.dtype == np.float32
    assert np.allclose(v, rgb.mean(0), atol=1e-6)
    v, a = pool_frames(rgb, audio, "mean+std")
    assert v.shape == (2048,) and a.shape == (256,)
    assert np.allclose(v[:1024], rgb.mean(0), atol=1e-6) and np.allclose(v[1024:], rgb.std(0), atol=1e-5)
    assert np.allclose(a[128:], audio.std(0), atol=1e-5)
    v, a = pool_frames(rgb[0], audio[0], "mean")  # video-level means pass through
    assert np.array_equal(v, rgb[0])
    with pytest.raises(VtagError, match="mean\\+std' needs frame-level"):
        pool_frames(rgb[0], audio[0], "mean+std")
    with pytest.raises(VtagError, match="zero frames"):
        pool_frames(rgb[:0], audio[:0], "mean")
    with pytest.raises(VtagError, match="input spec"):
        pool_frames(rgb, audio, "max")


def test_expand_paths(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.tfrecord", "a.tfrecord", "sub/c.tfrecord", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in expand_paths(tmp_path)] == ["a.tfrecord", "b.tfrecord", "c.tfrecord"]
    assert [p.name for p in expand_paths(str(tmp_path / "*.tfrecord"))] == ["a.tfrecord", "b.tfrecord"]
    assert [p.name for p in expand_paths([tmp_path / "b.tfrecord", tmp_path])] == ["b.tfrecord", "a.tfrecord", "c.tfrecord"]
    with pytest.raises(VtagError, match="no such file"):
        expand_paths(tmp_path / "missing.tfrecord")
    with pytest.raises(VtagError, match="matches no files"):
        expand_paths(str(tmp_path / "*.nothing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(VtagError, match="no \\*.tfrecord files"):
        expand_paths(tmp_path / "empty")


# ---- bad records ---------------------------------------------------------------------------------


def damaged_files(tmp_path: Path) -> dict[str, tuple[Path, int, str]]:
    """name -> (file, index of the bad record, words the error must contain). Each file holds 6 good
    records around one bad one (except where the damage ends the file)."""
    good = video_records(6, seed=7)
    good_payloads = [encode_example({"id": [r.id], "labels": r.labels, "mean_rgb": r.rgb, "mean_audio": r.audio})
                     for r in good]
    rgb, audio = np.zeros(1024, np.float32), np.zeros(128, np.float32)
    bad_payloads = {
        "missing": (encode_example({"id": [b"m"], "labels": np.array([1]), "mean_rgb": rgb}), "missing feature 'mean_audio'"),
        "length": (encode_example({"id": [b"w"], "labels": np.array([1]), "mean_rgb": rgb[:1000], "mean_audio": audio}),
                   "'mean_rgb' has 1000 values, expected 1024"),
        "label": (encode_example({"id": [b"l"], "labels": np.array([2, 5000]), "mean_rgb": rgb, "mean_audio": audio}),
                  "label 5000 outside the vocabulary"),
        "negative": (encode_example({"id": [b"n"], "labels": np.array([-3]), "mean_rgb": rgb, "mean_audio": audio}),
                     "label -3 outside the vocabulary"),
        "cut": (encode_example({"id": [b"c"], "labels": np.array([1]), "mean_rgb": rgb, "mean_audio": audio})
                .replace(b"\x0a\x06labels\x12\x05\x1a\x03\x0a\x01\x01", b"\x0a\x06labels\x12\x05\x1a\x03\x0a\x01\x81"),
                "varint runs past the end"),
        "noid": (encode_example({"labels": np.array([1]), "mean_rgb": rgb, "mean_audio": audio}), "missing feature 'id'"),
    }
    out = {}
    for k, (name, (payload, words)) in enumerate(bad_payloads.items()):
        path = tmp_path / f"damaged{k}.tfrecord"  # names that cannot match an expected message
        write_tfrecord(path, good_payloads[:3] + [payload] + good_payloads[3:])
        out[name] = (path, 3, words)
    clean = tmp_path / "clean.tfrecord"
    write_tfrecord(clean, good_payloads)
    data = clean.read_bytes()
    offsets = [0]
    for _ in range(6):
        offsets.append(offsets[-1] + 16 + struct.unpack_from("<Q", data, offsets[-1])[0])
    flipped = bytearray(data)
    flipped[offsets[2] + 12 + 100] ^= 0x01  # a bit inside record 2's floats
    (tmp_path / "damaged_a.tfrecord").write_bytes(bytes(flipped))
    out["crc"] = (tmp_path / "damaged_a.tfrecord", 2, "CRC mismatch in the record data")
    header = bytearray(data)
    header[offsets[4] + 1] ^= 0x40  # record 4's length field
    (tmp_path / "damaged_b.tfrecord").write_bytes(bytes(header))
    out["header"] = (tmp_path / "damaged_b.tfrecord", 4, "CRC mismatch in the record length")
    (tmp_path / "damaged_c.tfrecord").write_bytes(data[: offsets[5] + 2000])
    out["truncated"] = (tmp_path / "damaged_c.tfrecord", 5, "truncated: record says")
    return out


EXPECTED_GOOD = {"missing": 6, "length": 6, "label": 6, "negative": 6, "cut": 6, "noid": 6, "crc": 5, "header": 4,
                 "truncated": 5}


@pytest.mark.parametrize("reader", ["records", "arrays"])
def test_bad_records_raise_naming_file_and_record(tmp_path, reader):
    for name, (path, index, words) in damaged_files(tmp_path).items():
        with pytest.raises(VtagError) as info:
            if reader == "records":
                list(read_records(path))
            else:
                read_video_level_arrays(path)
        message = str(info.value)
        assert str(path) in message and f"record {index}:" in message and words in message, (name, message)
        assert "skip" in message and "\n" not in message


@pytest.mark.parametrize("reader", ["records", "arrays"])
def test_skip_bad_skips_and_counts(tmp_path, reader):
    good = {r.id: r for r in video_records(6, seed=7)}
    good_ids = list(good)
    for name, (path, index, _) in damaged_files(tmp_path).items():
        stats = ReadStats()
        if reader == "records":
            got = list(read_records(path, skip_bad=True, stats=stats))
        else:
            arrays = read_video_level_arrays(path, skip_bad=True, stats=stats)
            got = [YT8MRecord(i, lab, r, a) for i, lab, r, a in zip(arrays.ids, arrays.labels, arrays.rgb, arrays.audio)]
            assert arrays.skipped == 1 and len(arrays.rgb) == len(arrays.ids)
        ids = [r.id for r in got]
        for r in got:  # what survives is intact: a bad record must not leak into its neighbours
            assert_same(r, good[r.id])
        assert stats.skipped == 1 and stats.records == EXPECTED_GOOD[name], name
        if name in ("header", "truncated"):  # nothing after a bad length can be framed
            expected = good_ids[:index]
        elif name == "crc":
            expected = good_ids[:2] + good_ids[3:]
        else:  # the bad record was inserted between good ones
            expected = good_ids
        assert ids == expected, name
        assert f"record {index}:" in stats.errors[0]


def test_num_classes_bounds_labels(tmp_path):
    path = tmp_path / "l.tfrecord"
    write_records(path, [YT8MRecord("x", np.array([3861]), np.zeros(1024, np.float32), np.zeros(128, np.float32))])
    assert len(read_video_level_arrays(path, num_classes=3862)) == 1
    for read in (lambda: read_video_level_arrays(path, num_classes=3000), lambda: list(read_records(path, num_classes=3000))):
        with pytest.raises(VtagError, match="record 0: label 3861 outside the vocabulary \\(0..2999\\)"):
            read()


def test_inspect_and_cli_info(tmp_path):
    write_records(tmp_path / "v.tfrecord", video_records(5))
    frames = [YT8MRecord(f"f{t}", np.array([1]), np.zeros((t, 1024), np.uint8), np.zeros((t, 128), np.uint8), "frame")
              for t in (2, 4, 9)]
    write_records(tmp_path / "f.tfrecord", frames, level="frame")
    info = inspect_file(tmp_path / "f.tfrecord")
    assert (info.kind, info.schema, info.records, info.labelled, info.frames) == ("frame-level", "2018 id", 3, 3, (2, 5.0, 9))
    (tmp_path / "bad").mkdir()
    damaged = damaged_files(tmp_path / "bad")["crc"][0]
    runner = CliRunner()
    result = runner.invoke(app, ["info", str(tmp_path / "v.tfrecord"), str(tmp_path / "f.tfrecord"), "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]  # JSON Lines
    assert [(r["kind"], r["records"], r["bad"]) for r in rows] == [("video-level", 5, 0), ("frame-level", 3, 0)]
    result = runner.invoke(app, ["info", str(damaged)])
    assert result.exit_code != 0 and "record 2" in str(result.exception)
    result = runner.invoke(app, ["info", str(damaged), "--skip-bad", "--json"])
    assert result.exit_code == 0 and json.loads(result.output.splitlines()[0])["bad"] == 1
    result = runner.invoke(app, ["info", str(tmp_path / "v.tfrecord"), str(tmp_path / "f.tfrecord")])
    assert result.exit_code == 0 and "video-level" in result.output and "2018 id" in result.output
    assert "2/5.0/9" in result.output  # frames min/mean/max of the frame-level file


# ---- real files ----------------------------------------------------------------------------------


def test_shipped_sample(repo_root):
    sample = repo_root / "examples" / "yt8m-2018-sample.tfrecord"
    arrays = read_video_level_arrays(sample)
    records = list(read_records(sample))
    assert len(arrays) == len(records) == 293
    assert arrays.ids == [r.id for r in records] and all(len(i) == 4 for i in arrays.ids)
    assert np.array_equal(arrays.rgb, np.stack([r.rgb for r in records]))
    assert all(np.array_equal(a, r.labels) for a, r in zip(arrays.labels, records))
    assert scan_labels(sample) == ({"2018"}, max(int(r.labels.max()) for r in records))


def test_all_2018_shards(shared_data):
    train = read_video_level_arrays(shared_data / "yt8m-2018" / "train", num_classes=3862)
    valid = read_video_level_arrays(shared_data / "yt8m-2018" / "valid", num_classes=3862)
    assert len(expand_paths(shared_data / "yt8m-2018")) == 130
    assert (len(train), len(valid), len(train) + len(valid)) == (28_792, 8_722, 37_514)
    assert train.skipped == valid.skipped == 0
    assert len(set(train.ids) | set(valid.ids)) == 37_514  # ids are unique across the release
    assert all(lab is not None and lab.size for lab in train.labels)
    assert np.isfinite(train.rgb).all() and np.isfinite(valid.audio).all()


def test_2017_shards(shared_data):
    folder = shared_data / "yt8m-2017"
    for path in sorted(folder.glob("*.tfrecord")):
        records = list(read_records(path, num_classes=4716))
        arrays = read_video_level_arrays(path, num_classes=4716)
        assert len(records) == len(arrays) > 100
        assert {r.schema for r in records} == {"2017"} and arrays.schema == ["2017"] * len(arrays)
        unlabelled = path.name.startswith("testa")
        assert all((r.labels is None) == unlabelled for r in records), path
        assert np.array_equal(arrays.rgb, np.stack([r.rgb for r in records]))
    schemas, max_label = scan_labels(folder)
    assert schemas == {"2017"} and 3862 <= max_label < 4716


def test_frame_level_reference_file(shared_data):
    (record,) = read_records(shared_data / "yt8m-frame-level" / "extractor_output_184frames.tfrecord")
    assert record.level == "frame" and record.num_frames == 184
    assert record.rgb.shape == (184, 1024) and record.audio.shape == (184, 128)
    assert record.labels.tolist() == [1, 2]
    assert np.all(record.audio == np.float32(4 / 512 - 2))  # that extractor writes zero (q=0) audio
    assert record.rgb.min() >= -2 and record.rgb.max() <= 2 + 4 / 512
    # it also stores the video-level means in its context, which the batched reader uses
    arrays = read_video_level_arrays(shared_data / "yt8m-frame-level")
    assert len(arrays) == 1 and arrays.ids == [record.id]


def test_audioset_files(shared_data):
    stats = ReadStats()
    records = list(read_audioset_records(shared_data / "audioset", stats=stats))
    assert len(records) == 975 and stats.skipped == 0
    first = records[0]
    assert len(first.video_id) == 11 and first.end_time > first.start_time
    assert all(r.audio.shape[1] == 128 and 1 <= len(r.audio) <= 10 for r in records)
    assert all(r.labels.size and r.labels.max() < 527 for r in records)
    info = inspect_file(shared_data / "audioset" / "rm.tfrecord")
    assert info.kind == "audioset" and info.records + 0 == sum(1 for _ in iter_tfrecord(shared_data / "audioset" / "rm.tfrecord"))
    with pytest.raises(VtagError, match="AudioSet record"):
        list(read_records(shared_data / "audioset" / "rm.tfrecord"))
