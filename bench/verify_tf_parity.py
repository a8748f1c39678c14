"""Check vtag's record readers against TensorFlow's own parsers, bit for bit.

TensorFlow is never a vtag dependency; run this in a separate virtual environment:

    python3 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu numpy google-crc32c
    /tmp/tfenv/bin/python bench/verify_tf_parity.py [--data ../shared/data]

For every YT8M video-level shard (2018 train/valid, 2017 validate/test) it compares ids, labels and the
raw bits of mean_rgb / mean_audio between `tf.io.parse_single_example` and both vtag readers
(`read_records`, `read_video_level_arrays`); for the frame-level file and the AudioSet files it
compares `tf.io.parse_single_sequence_example` + the starter code's Dequantize (in TF) with
`read_records` / `read_audioset_records`. Exits 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

try:
    import tensorflow as tf
except ImportError:
    sys.exit("TensorFlow is not installed here; run this script from the venv the docstring describes")

from vtag.io.fast_reader import read_video_level_arrays
from vtag.io.records import read_audioset_records, read_records


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.ascontiguousarray(a, np.float32), np.ascontiguousarray(b, np.float32)
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def tf_dequantize(q: tf.Tensor) -> tf.Tensor:
    # the YT8M starter code's utils.Dequantize(feat_vector, max_quantized_value=2, min_quantized_value=-2)
    scalar = 4.0 / 255.0
    bias = 4.0 / 512.0 - 2.0
    return tf.cast(q, tf.float32) * scalar + bias


def video_level(files: list[Path]) -> tuple[int, int]:
    records = mismatches = 0
    for path in files:
        vt_records = list(read_records(path))
        arrays = read_video_level_arrays(path)
        tf_rows = []
        for raw in tf.data.TFRecordDataset(str(path)):
            key = "video_id" if "video_id" in tf.train.Example.FromString(raw.numpy()).features.feature else "id"
            spec = {
                key: tf.io.FixedLenFeature([], tf.string),
                "labels": tf.io.VarLenFeature(tf.int64),
                "mean_rgb": tf.io.FixedLenFeature([1024], tf.float32),
                "mean_audio": tf.io.FixedLenFeature([128], tf.float32),
            }
            parsed = tf.io.parse_single_example(raw, spec)
            tf_rows.append((parsed[key].numpy().decode(), tf.sparse.to_dense(parsed["labels"]).numpy(),
                            parsed["mean_rgb"].numpy(), parsed["mean_audio"].numpy()))
        if not (len(tf_rows) == len(vt_records) == len(arrays)):
            print(f"  {path}: count differs: tf {len(tf_rows)}, read_records {len(vt_records)}, "
                  f"arrays {len(arrays)}")
            mismatches += abs(len(tf_rows) - len(vt_records)) + 1
        for i, (vid, labels, rgb, audio) in enumerate(tf_rows[: len(vt_records)]):
            rec = vt_records[i]
            rec_labels = rec.labels if rec.labels is not None else np.empty(0, np.int64)
            arr_labels = arrays.labels[i] if arrays.labels[i] is not None else np.empty(0, np.int64)
            ok = (rec.id == vid == arrays.ids[i]
                  and np.array_equal(rec_labels, labels) and np.array_equal(arr_labels, labels)
                  and same_bits(rec.rgb, rgb) and same_bits(arrays.rgb[i], rgb)
                  and same_bits(rec.audio, audio) and same_bits(arrays.audio[i], audio))
            if not ok:
                mismatches += 1
                if mismatches <= 5:
                    print(f"  MISMATCH {path} record {i} ({vid})")
        records += len(tf_rows)
    return records, mismatches


def frame_level(files: list[Path]) -> tuple[int, int]:
    records = mismatches = 0
    for path in files:
        vt_records = list(read_records(path))
        count = 0
        for i, raw in enumerate(tf.data.TFRecordDataset(str(path))):
            context, lists = tf.io.parse_single_sequence_example(
                raw,
                context_features={"id": tf.io.FixedLenFeature([], tf.string),
                                  "labels": tf.io.VarLenFeature(tf.int64)},
                sequence_features={"rgb": tf.io.FixedLenSequenceFeature([], tf.string),
                                   "audio": tf.io.FixedLenSequenceFeature([], tf.string)},
            )
            rgb = tf_dequantize(tf.io.decode_raw(lists["rgb"], tf.uint8)).numpy()
            audio = tf_dequantize(tf.io.decode_raw(lists["audio"], tf.uint8)).numpy()
            rec = vt_records[i] if i < len(vt_records) else None
            ok = (rec is not None and rec.id == context["id"].numpy().decode()
                  and np.array_equal(rec.labels, tf.sparse.to_dense(context["labels"]).numpy())
                  and same_bits(rec.rgb, rgb) and same_bits(rec.audio, audio))
            mismatches += not ok
            count += 1
        mismatches += abs(len(vt_records) - count)
        records += count
    return records, mismatches


def audioset(files: list[Path]) -> tuple[int, int]:
    records = mismatches = 0
    for path in files:
        vt_records = list(read_audioset_records(path))
        count = 0
        for i, raw in enumerate(tf.data.TFRecordDataset(str(path))):
            context, lists = tf.io.parse_single_sequence_example(
                raw,
                context_features={"video_id": tf.io.FixedLenFeature([], tf.string),
                                  "start_time_seconds": tf.io.FixedLenFeature([], tf.float32),
                                  "end_time_seconds": tf.io.FixedLenFeature([], tf.float32),
                                  "labels": tf.io.VarLenFeature(tf.int64)},
                sequence_features={"audio_embedding": tf.io.FixedLenSequenceFeature([], tf.string)},
            )
            audio = tf_dequantize(tf.io.decode_raw(lists["audio_embedding"], tf.uint8)).numpy()
            rec = vt_records[i] if i < len(vt_records) else None
            ok = (rec is not None and rec.video_id == context["video_id"].numpy().decode()
                  and rec.start_time == float(context["start_time_seconds"].numpy())
                  and rec.end_time == float(context["end_time_seconds"].numpy())
                  and np.array_equal(rec.labels, tf.sparse.to_dense(context["labels"]).numpy())
                  and same_bits(rec.audio, audio))
            mismatches += not ok
            count += 1
        mismatches += abs(len(vt_records) - count)
        records += count
    return records, mismatches


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    d = args.data
    groups = [
        ("yt8m-2018 train", video_level, sorted((d / "yt8m-2018" / "train").glob("*.tfrecord"))),
        ("yt8m-2018 valid", video_level, sorted((d / "yt8m-2018" / "valid").glob("*.tfrecord"))),
        ("yt8m-2017 (validate + unlabelled test)", video_level, sorted((d / "yt8m-2017").glob("*.tfrecord"))),
        ("yt8m frame-level", frame_level, sorted((d / "yt8m-frame-level").glob("*.tfrecord"))),
        ("audioset", audioset, sorted((d / "audioset").glob("*.tfrecord"))),
    ]
    print(f"TensorFlow {tf.__version__}, numpy {np.__version__}, data {d}")
    # negative control: the comparison itself must see a one-bit difference and -0.0 vs 0.0
    x = np.linspace(-1, 1, 1024, dtype=np.float32)
    flipped = x.copy()
    flipped.view(np.uint32)[7] ^= 1
    assert same_bits(x, x.copy()) and not same_bits(x, flipped)
    assert not same_bits(np.zeros(1, np.float32), -np.zeros(1, np.float32))
    total_bad = 0
    for name, check, files in groups:
        if not files:
            print(f"{name}: no files found, skipped")
            continue
        n, bad = check(files)
        total_bad += bad
        print(f"{name}: {len(files)} files, {n:,} records, {bad} mismatches")
    print("PARITY OK" if total_bad == 0 else f"PARITY FAILED: {total_bad} mismatches")
    return 0 if total_bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
