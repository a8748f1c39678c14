"""Split-half check of a neighbour memory's settings: are they fitted to the videos they are scored on?

Scores a model with a memory (`vtag memory`) on held-out records over a grid of k, temperature,
epsilon and weight, on the first and the second half of the files, and reports how much the settings
chosen on one half lift the other. The memory's keys stay as stored; only the lookup settings vary.

    python bench/tune_memory.py "/work/shared/data/yt8m-2018/valid/validate010?.tfrecord" [--model weights/default]
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    from vtag.tasks.evaluate import load_features
    from vtag.tasks.metrics import EvaluationMetrics
    from vtag.models.attach import load_with_and_without_memory
    from vtag.io.fast_reader import read_video_level_arrays
    from vtag.io.paths import expand_paths

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records", nargs="+", help="held-out labelled records (at least two files)")
    parser.add_argument("--model", default=str(REPO / "weights" / "default"))
    args = parser.parse_args()

    hybrid, plain = load_with_and_without_memory(args.model)
    files = expand_paths(args.records)
    if len(files) < 2:
        raise SystemExit("give at least two record files: they are split into halves by file")
    sizes = [len(read_video_level_arrays(f)) for f in files]
    visual, audio, labels = load_features(files, "mean", hybrid.config.num_classes)
    visual, audio = torch.from_numpy(visual), torch.from_numpy(audio)
    cut = sum(sizes[:len(files) // 2])
    halves = {"A": np.arange(cut), "B": np.arange(cut, len(labels)), "all": np.arange(len(labels))}

    def gaps(scores: np.ndarray) -> dict[str, float]:
        out = {}
        for name, index in halves.items():
            metrics = EvaluationMetrics(hybrid.config.num_classes)
            metrics.accumulate(scores[index], [labels[i] for i in index])
            out[name] = metrics.summary()["gap"]
        return out

    with torch.inference_mode():
        network_logits = plain(visual, audio).double().numpy()
    base = gaps(1 / (1 + np.exp(-network_logits)))
    print(f"A = first {len(files) // 2} files ({cut} videos), B = the other {len(files) - len(files) // 2}"
          f" ({len(labels) - cut} videos)")
    print(f"network alone: A {base['A']:.4f}  B {base['B']:.4f}  all {base['all']:.4f}")
    rows = []
    for k, temperature in itertools.product((30, 100), (0.03, 0.05, 0.1)):
        hybrid.memory.settings.update(k=k, temperature=temperature)
        with torch.inference_mode():
            neighbours = hybrid.memory.neighbours(visual, audio)
        for epsilon in (0.001, 0.003):
            hybrid.memory.settings.update(epsilon=epsilon)
            with torch.inference_mode():
                vote_logits = hybrid.memory.vote_logits(*neighbours).numpy()
            for weight in (0.2, 0.25, 0.3, 0.35):
                logits = (1 - weight) * network_logits + weight * vote_logits
                result = gaps(1 / (1 + np.exp(-logits)))
                rows.append(((k, temperature, epsilon, weight), result))
                print(f"k {k:3d}  temperature {temperature:.2f}  epsilon {epsilon:.3f}  weight {weight:.2f}:"
                      f"  A {result['A']:.4f}  B {result['B']:.4f}  all {result['all']:.4f}", flush=True)
    for chosen_on, scored_on in (("A", "B"), ("B", "A")):
        settings, result = max(rows, key=lambda row: row[1][chosen_on])
        print(f"best on {chosen_on} {settings}: lifts {scored_on} from {base[scored_on]:.4f} to {result[scored_on]:.4f}")
    every = [result["all"] for _, result in rows]
    print(f"all {len(labels)} videos over the grid: {min(every):.4f} to {max(every):.4f}")


if __name__ == "__main__":
    main()
