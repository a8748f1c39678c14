"""Batch tagging throughput: `vtag batch` over a folder of generated clips against the same clips
through `vtag classify` one at a time (one CLI process per clip, as a shell loop would), both with
random extractor weights on this machine's CPU.

    .venv/bin/python bench/bench_batch.py [--clips 8] [--seconds 10] [--size 640x360] [--workers 2]

Prints video-seconds per second for each and their ratio.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from media_factory import make_media  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    vtag = [sys.executable, "-m", "vtag"]

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp, "clips")
        folder.mkdir()
        for i in range(args.clips):
            make_media(folder / f"clip{i:03d}.mp4", duration_s=args.seconds, size=(width, height), fps=25, crf=23)
        total_seconds = args.clips * args.seconds

        start = time.perf_counter()
        for clip in sorted(folder.iterdir()):
            subprocess.run([*vtag, "classify", str(clip), "--random-weights", "--device", "cpu", "--json"],
                           check=True, capture_output=True)
        one_by_one = time.perf_counter() - start

        start = time.perf_counter()
        subprocess.run([*vtag, "batch", str(folder), "-o", str(Path(tmp, "results.jsonl")), "--random-weights",
                        "--device", "cpu", "--workers", str(args.workers)], check=True, capture_output=True)
        batched = time.perf_counter() - start

    print(f"{args.clips} clips x {args.seconds:.0f} s at {width}x{height}, 25 fps, H.264 + AAC; CPU, random weights")
    print(f"vtag classify, one process per clip: {one_by_one:7.1f} s  {total_seconds / one_by_one:6.2f} video-s/s")
    print(f"vtag batch --workers {args.workers}:           {batched:7.1f} s  {total_seconds / batched:6.2f} video-s/s")
    print(f"batch / one-by-one throughput:        {one_by_one / batched:6.2f}x")


if __name__ == "__main__":
    main()
