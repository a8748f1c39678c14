"""`vtag batch` on one process (2 decoding workers) against `vtag batch --ray` on a local Ray cluster
(2 decoding tasks at a time + 1 inference actor: 3 CPUs, the same split as the single process), both
with random extractor weights on this machine's CPU.

    .venv/bin/python bench/bench_ray.py [--clips 6] [--seconds 4] [--size 320x240]

Each path runs on 1 clip and on all of them; the difference over (clips - 1) is the per-file cost
without the fixed costs (model loads, actor start). Prints per-file seconds of each, their ratio,
Ray's per-file overhead in ms, and the cost of one empty Ray task round trip.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from media_factory import make_media  # noqa: E402


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--size", default="320x240")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))

    import ray
    import torch

    from vtag.tasks.batch import run_batch
    from vtag.tasks.distributed import batch_on_ray
    from vtag.models.registry import create_model
    from vtag.models.storage import save_model

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        save_model(create_model("fc-early-fusion", num_classes=3862, hidden=32), tmp / "model", extra={"vocabulary": "2018"})
        one, many = tmp / "one", tmp / "many"
        one.mkdir(), many.mkdir()
        for i in range(args.clips):
            make_media(many / f"clip{i:03d}.mp4", duration_s=args.seconds, size=(width, height), fps=25)
        make_media(one / "clip.mp4", duration_s=args.seconds, size=(width, height), fps=25)
        common = dict(model=tmp / "model", device="cpu", random_weights=True)
        run = lambda folder, out, **kw: (lambda: run_batch([folder], tmp / out, **common, **kw))

        timed(run(one, "warm.jsonl", workers=0))  # load the networks into this process once
        single_1 = timed(run(one, "s1.jsonl", workers=2))
        single_n = timed(run(many, "sn.jsonl", workers=2))

        start = time.perf_counter()
        ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - start
        on_ray = lambda folder, out: (lambda: batch_on_ray([folder], tmp / out, **common))
        ray_1 = timed(on_ray(one, "r1.jsonl"))
        ray_n = timed(on_ray(many, "rn.jsonl"))

        noop = ray.remote(lambda x: x)
        ray.get([noop.remote(i) for i in range(20)])
        tasks = 200
        start = time.perf_counter()
        for i in range(tasks):
            ray.get(noop.remote(i))
        task_ms = (time.perf_counter() - start) / tasks * 1000
        ray.shutdown()

    per_single = (single_n - single_1) / (args.clips - 1)
    per_ray = (ray_n - ray_1) / (args.clips - 1)
    print(f"{args.clips} clips of {args.seconds:.0f} s at {width}x{height}, 25 fps, random weights, CPU")
    print(f"single process, 2 workers: {single_n:.1f} s for all, {single_1:.1f} s for 1 -> {per_single:.2f} s/file")
    print(f"Ray, 2 decode tasks + 1 actor: {ray_n:.1f} s for all, {ray_1:.1f} s for 1 -> {per_ray:.2f} s/file "
          f"(cluster start {ray_start:.1f} s, not counted)")
    print(f"ratio Ray / single per file: {per_ray / per_single:.2f}; Ray's overhead per file: "
          f"{(per_ray - per_single) * 1000:.0f} ms; one empty Ray task round trip: {task_ms:.2f} ms")


if __name__ == "__main__":
    main()
