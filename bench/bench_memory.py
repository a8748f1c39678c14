"""Inference cost of a neighbour memory: records/s of the shipped model with its memory against the
same model without it, in the same process, on the same records (reading excluded); for an ensemble,
also one of its networks alone.

    python bench/bench_memory.py [--model weights/default] [--records examples/yt8m-2018-sample.tfrecord]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent


def rate(net, visual, audio, batch_size: int, repeats: int) -> float:
    with torch.inference_mode():
        net(visual[:batch_size], audio[:batch_size])  # warm-up
        best = 0.0
        for _ in range(repeats):
            t0 = time.perf_counter()
            for start in range(0, len(visual), batch_size):
                net(visual[start:start + batch_size], audio[start:start + batch_size])
            best = max(best, len(visual) / (time.perf_counter() - t0))
    return best


def main() -> None:
    from vtag.tasks.evaluate import load_features
    from vtag.models.attach import load_with_and_without_memory

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(REPO / "weights" / "default"))
    parser.add_argument("--records", nargs="+", default=[str(REPO / "examples" / "yt8m-2018-sample.tfrecord")])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    hybrid, plain = load_with_and_without_memory(args.model)
    visual, audio, _ = load_features(args.records, hybrid.config.input_spec, hybrid.config.num_classes)
    visual, audio = torch.from_numpy(visual), torch.from_numpy(audio)
    print(f"{len(visual)} records, memory of {hybrid.config.memory['videos']:,} videos x {hybrid.config.memory['dim']} dims,"
          f" {torch.get_num_threads()} thread(s)")
    for batch_size in args.batch_sizes:
        without = rate(plain, visual, audio, batch_size, args.repeats)
        with_memory = rate(hybrid, visual, audio, batch_size, args.repeats)
        line = (f"batch {batch_size:4d}: without memory {without:8.1f} records/s, with memory {with_memory:8.1f} records/s"
                f" ({with_memory / without:.2f} x)")
        if hybrid.config.members > 1:
            single = rate(plain.members[0].eval(), visual, audio, batch_size, args.repeats)
            line += f"; one of its {hybrid.config.members} networks alone {single:8.1f} records/s"
        print(line)


if __name__ == "__main__":
    main()
