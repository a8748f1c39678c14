"""Check vtag.tasks.metrics against Google's own metric code (youtube-8m eval_util.py and its two calculators).

Google's files are not part of this repository: fetch eval_util.py, average_precision_calculator.py and
mean_average_precision_calculator.py from github.com/google/youtube-8m into a folder and pass it. The
script stubs the TensorFlow import (eval_util only imports gfile, which the metric code never uses) and
Python 2's xrange, then scores the same predictions with both and prints the max abs difference.

    .venv/bin/python bench/verify_metrics_parity.py /tmp/yt8m_ref [--records RECORDS... --model NAME|PATH]

Without --records it scores random predictions only; with them it also scores a model's predictions on
those records (default model: the shipped one).
"""

from __future__ import annotations

import argparse
import builtins
import importlib
import sys
import time
import types

import numpy as np

from vtag.tasks.metrics import EvaluationMetrics


def load_google(folder: str):
    tensorflow = types.ModuleType("tensorflow")
    python = types.ModuleType("tensorflow.python")
    platform = types.ModuleType("tensorflow.python.platform")
    platform.gfile = types.SimpleNamespace()
    tensorflow.python, python.platform = python, platform
    sys.modules.update({"tensorflow": tensorflow, "tensorflow.python": python,
                        "tensorflow.python.platform": platform})
    builtins.xrange = range  # eval_util.py is Python 2 code
    sys.path.insert(0, folder)
    return importlib.import_module("eval_util")


def google_metrics(eval_util, scores: np.ndarray, truth: np.ndarray, batch_size: int) -> dict:
    num_classes = scores.shape[1]
    metrics = eval_util.EvaluationMetrics(num_classes, 20)
    for start in range(0, len(scores), batch_size):
        metrics.accumulate(scores[start:start + batch_size], truth[start:start + batch_size],
                           np.zeros(1))
    got = metrics.get()
    aps = np.asarray(got["aps"])
    # DESIGN.md §5: the mean over classes with at least one positive label in the set.
    with_positives = truth.sum(axis=0) > 0
    return {"gap": got["gap"], "hit_at_1": got["avg_hit_at_one"], "perr": got["avg_perr"],
            "map": float(aps[with_positives].mean())}


def vtag_metrics(scores: np.ndarray, truth: np.ndarray, batch_size: int) -> dict:
    metrics = EvaluationMetrics(scores.shape[1], top_k=20)
    for start in range(0, len(scores), batch_size):
        metrics.accumulate(scores[start:start + batch_size], truth[start:start + batch_size])
    return metrics.summary()


def random_case(rng: np.random.Generator, videos: int, classes: int):
    truth = np.zeros((videos, classes), np.float32)
    for row in range(videos):
        count = rng.choice([0, 1, 2, 3, 5, 8, 25, 40], p=[.02, .3, .25, .15, .1, .1, .05, .03])
        truth[row, rng.choice(classes, count, replace=False)] = 1
    scores = rng.random((videos, classes)).astype(np.float32)
    # Make scores informative so GAP is far from 0: boost a random share of the true labels.
    scores += truth * rng.random((videos, classes)).astype(np.float32) * 0.6
    return scores / scores.max(), truth


def model_case(records: list[str], model: str | None):
    from vtag.tasks.evaluate import predict

    # float64 as `vtag eval` uses: float32 sigmoid saturates to exactly 1.0 and makes ties
    scores, labels, _ = predict(records, model=model, dtype=np.float64)
    truth = np.zeros(scores.shape, np.float32)
    for row, indices in enumerate(labels):
        truth[row, indices] = 1
    return scores, truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("google_dir", help="folder with Google's eval_util.py and the two calculators")
    parser.add_argument("--records", nargs="*", default=[], help="record files to score with a model")
    parser.add_argument("--model", default=None, help="registry name or run folder (default: shipped)")
    parser.add_argument("--batch-size", type=int, default=512)
    args = parser.parse_args()

    eval_util = load_google(args.google_dir)
    rng = np.random.default_rng(0)
    cases = [("random 2000 x 3862", *random_case(rng, 2000, 3862)),
             ("random 3000 x 50 (dense, >20 labels)", *random_case(rng, 3000, 50))]
    if args.records:
        cases.append((f"model {args.model or 'default'} on {' '.join(args.records)}",
                      *model_case(args.records, args.model)))

    print("command: " + " ".join([".venv/bin/python", *sys.argv]))
    worst = {}
    for name, scores, truth in cases:
        t0 = time.perf_counter()
        ours = vtag_metrics(scores, truth, args.batch_size)
        t1 = time.perf_counter()
        theirs = google_metrics(eval_util, scores, truth, args.batch_size)
        t2 = time.perf_counter()
        diffs = {key: abs(ours[key] - theirs[key]) for key in theirs}
        for key, value in diffs.items():
            worst[key] = max(worst.get(key, 0.0), value)
        print(f"\n{name}: {len(scores)} videos; vtag {t1 - t0:.2f} s, google {t2 - t1:.2f} s")
        for key in theirs:
            print(f"  {key:9s} vtag {ours[key]:.6f}  google {theirs[key]:.6f}  |diff| {diffs[key]:.2e}")
    print("\nmax |diff| over all cases: " + ", ".join(f"{k} {v:.2e}" for k, v in worst.items()))
    agree = all(v < 5e-5 for v in worst.values())
    print("agreement to 4 decimals: " + ("yes" if agree else "NO"))
    sys.exit(0 if agree else 1)


if __name__ == "__main__":
    main()
