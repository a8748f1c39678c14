"""Video-level record parsing speed: vtag against TensorFlow's tf.data, on the same shards.

    /tmp/tfenv/bin/python bench/bench_records.py [--data ../shared/data/yt8m-2018/train] [--repeats 9]
        [--tf-threads 1] [--tfrecord-pkg]

Run it in the TensorFlow verification venv (see bench/verify_tf_parity.py) to get both columns; without
TensorFlow only vtag is timed. With --tfrecord-pkg the `tfrecord` PyPI package replaces TensorFlow (its
protos clash with TensorFlow's in one process). All readers run in this one process, on files already in
the page cache (one untimed warm-up each), in interleaved rounds, and must return the same record count.
Reported: records/s by wall clock (best and median of --repeats runs) and per second of process CPU
time (which counts every TensorFlow thread; vtag uses one).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from vtag.io.fast_reader import read_video_level_arrays
from vtag.io.records import read_records


def vtag_arrays(files: list[str]) -> int:
    arrays = read_video_level_arrays(files)
    return len(arrays)


def vtag_records(files: list[str]) -> int:
    return sum(1 for _ in read_records(files))


def make_tf_reader(batch: int, threads: int):
    import tensorflow as tf

    if threads:
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        tf.config.threading.set_intra_op_parallelism_threads(threads)

    spec = {
        "id": tf.io.FixedLenFeature([], tf.string),
        "labels": tf.io.VarLenFeature(tf.int64),
        "mean_rgb": tf.io.FixedLenFeature([1024], tf.float32),
        "mean_audio": tf.io.FixedLenFeature([128], tf.float32),
    }

    def run(files: list[str]) -> int:
        ds = tf.data.TFRecordDataset(files).batch(batch).map(lambda x: tf.io.parse_example(x, spec))
        if threads:
            options = tf.data.Options()
            options.threading.private_threadpool_size = threads
            options.threading.max_intra_op_parallelism = 1
            ds = ds.with_options(options)
        n = 0
        for parsed in ds:
            rgb = parsed["mean_rgb"].numpy()
            parsed["mean_audio"].numpy()
            parsed["labels"].values.numpy()
            parsed["id"].numpy()
            n += len(rgb)
        return n

    where = f", {threads} thread{'s' if threads > 1 else ''}" if threads else ""
    return run, f"TensorFlow {tf.__version__} tf.data batch({batch}).map(parse_example){where}"


def make_tfrecord_pkg_reader():
    from tfrecord.reader import tfrecord_loader

    def run(files: list[str]) -> int:
        n = 0
        for f in files:
            for rec in tfrecord_loader(f, None, {"id": "byte", "labels": "int", "mean_rgb": "float",
                                                  "mean_audio": "float"}):
                n += len(rec["mean_rgb"]) // 1024
        return n

    return run, "tfrecord (PyPI) tfrecord_loader"


def timed(readers: list, files: list[str], repeats: int) -> list[tuple[int, list[float], list[float]]]:
    """Wall-clock and process CPU seconds of each run (CPU time counts all of TF's threads). Runs are
    interleaved (each reader once per round) so that all readers see the same changes in machine load."""
    counts = [fn(files) for fn, _ in readers]  # warm-up: page cache, imports, TF graph tracing
    wall: list[list[float]] = [[] for _ in readers]
    cpu: list[list[float]] = [[] for _ in readers]
    for _ in range(repeats):
        for i, (fn, _) in enumerate(readers):
            start, start_cpu = time.perf_counter(), time.process_time()
            n = fn(files)
            wall[i].append(time.perf_counter() - start)
            cpu[i].append(time.process_time() - start_cpu)
            assert n == counts[i]
    return list(zip(counts, wall, cpu))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "yt8m-2018" / "train")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1024, help="TensorFlow parse_example batch size")
    parser.add_argument("--tfrecord-pkg", action="store_true",
                        help="time the `tfrecord` PyPI package instead of TensorFlow (pip install tfrecord)")
    parser.add_argument("--tf-threads", type=int, default=0,
                        help="limit TensorFlow's thread pools to N threads (default: TensorFlow's own choice)")
    args = parser.parse_args()
    files = sorted(str(p) for p in args.data.glob("*.tfrecord"))
    if not files:
        print(f"no *.tfrecord files in {args.data}")
        return 1
    size = sum(os.path.getsize(f) for f in files)
    print(f"command: {sys.executable} {' '.join(sys.argv)}")
    print(f"{len(files)} shards, {size / 1e6:.1f} MB, numpy {np.__version__}, {os.cpu_count()} CPUs, "
          f"{args.repeats} timed runs each, load average {os.getloadavg()[0]:.1f}")

    readers = [(vtag_arrays, "vtag read_video_level_arrays"), (vtag_records, "vtag read_records (one YT8MRecord each)")]
    if args.tfrecord_pkg:
        # its generated protos clash with TensorFlow's in one process, so it is timed on its own
        readers.append(make_tfrecord_pkg_reader())
    else:
        try:
            readers.append(make_tf_reader(args.batch, args.tf_threads))
        except ImportError:
            print("TensorFlow not installed: run this in the TF venv for the reference column")

    results = {}
    counts = set()
    print(f"{'reader':72s} {'records':>7s}  {'wall best':>9s} {'median':>9s}  {'per CPU-s':>9s}  (records/s)")
    for (fn, name), (n, wall, cpu) in zip(readers, timed(readers, files, args.repeats)):
        counts.add(n)
        best, median, per_cpu = n / min(wall), n / statistics.median(wall), n / min(cpu)
        results[name] = (best, median, per_cpu)
        print(f"{name:72s} {n:7,}  {best:9,.0f} {median:9,.0f}  {per_cpu:9,.0f}")
    if len(counts) != 1:
        print(f"RECORD COUNTS DIFFER: {counts}")
        return 1
    tf_names = [k for k in results if k.startswith(("TensorFlow", "tfrecord"))]
    if tf_names:
        ours, theirs = results["vtag read_video_level_arrays"], results[tf_names[0]]
        print(f"vtag read_video_level_arrays / {tf_names[0].split()[0]}: "
              + ", ".join(f"{what} {a / b:.2f}x" for what, a, b in zip(("wall best", "wall median", "per CPU-s"), ours, theirs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
