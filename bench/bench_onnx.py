"""PyTorch fp32 against onnxruntime fp32, int8 and int4, side by side: size on disk, latency per video at
batch 1 and 64, peak memory, and GAP on held-out videos; then the int8 extractors' code changes.

    PYTHONPATH=. python bench/bench_onnx.py [--model DIR] [--records 'GLOB'] [--threads 2] [--work DIR]

Each runtime runs in a fresh subprocess, so its peak resident memory (VmHWM) is its own: model
load plus scoring every held-out video at batch 1024. The extractor part exports Inception and VGGish
with random weights (the official ones are not needed, and on random weights the numbers say how
much int8 moves the features, not how it moves the real ones) and reports the fraction of 8-bit
feature codes (vtag.features.pca.quantize) that differ from onnxruntime fp32's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
HELD_OUT = str(REPO.parent / "shared" / "data" / "yt8m-2018" / "valid" / "validate010[0-9].tfrecord")
RUNTIMES = ("torch-fp32", "onnx-fp32", "onnx-int8", "onnx-int4")


def rss_mb() -> float:
    """Peak resident memory of this process. VmHWM, not ru_maxrss: after fork + exec, ru_maxrss
    still carries the parent's peak, and the parent has held the exports."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(args) -> dict:
    """One runtime: load, time, score the held-out videos; prints one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    # the records first, so that they are not in any runtime's memory figure twice
    from vtag.io.paths import expand_paths
    from vtag.tasks.evaluate import load_features, score_batches
    from vtag.tasks.metrics import EvaluationMetrics

    visual, audio, labels = load_features(expand_paths([args.records]), "mean", 3862)
    baseline = rss_mb()
    started = time.perf_counter()
    if args.worker == "torch-fp32":
        from vtag.tasks.evaluate import load_for_evaluation

        net, _, _ = load_for_evaluation(args.model, "cpu")
        net(torch.from_numpy(visual[:1]), torch.from_numpy(audio[:1]))  # the memory's keys unpack on first use
    else:
        from vtag.tasks.onnx_runtime import OnnxScorer

        net = OnnxScorer(Path(args.work) / args.worker, threads=args.threads)
    load_s = time.perf_counter() - started

    def per_video(batch: int, calls: int) -> float:
        times = []
        for i in range(calls + 2):
            start = (i * batch) % (len(visual) - batch)
            t = time.perf_counter()
            for _ in score_batches(net, visual[start:start + batch], audio[start:start + batch], batch, "cpu", np.float64):
                pass
            times.append(time.perf_counter() - t)
        return float(np.median(times[2:])) / batch  # the first calls warm caches and allocators

    latency_1, latency_64 = per_video(1, args.calls_1), per_video(64, args.calls_64)
    metrics = EvaluationMetrics(3862, top_k=20)
    scores_all = []
    for start, scores in score_batches(net, visual, audio, 1024, "cpu", np.float64):
        metrics.accumulate(scores, labels[start:start + len(scores)])
        scores_all.append(scores)
    np.save(Path(args.work) / f"scores-{args.worker}.npy", np.concatenate(scores_all).astype(np.float32))
    return {"runtime": args.worker, "videos": len(visual), "gap": metrics.summary()["gap"], "load_s": load_s,
            "ms_per_video_b1": 1e3 * latency_1, "ms_per_video_b64": 1e3 * latency_64,
            "peak_rss_mb": rss_mb(), "rss_before_model_mb": baseline}


def prepare(args) -> dict:
    from vtag.models.export import export
    from vtag.models.storage import resolve_model_dir

    work = Path(args.work)
    sizes = {}
    directory = resolve_model_dir(args.model)
    sizes["torch-fp32"] = (directory / "model.safetensors").stat().st_size
    for name, int8, int4 in (("onnx-fp32", False, False), ("onnx-int8", True, False), ("onnx-int4", False, True)):
        if not (work / name / "export.json").is_file():
            started = time.perf_counter()
            export(args.model, work / name, int8=int8, int4=int4)
            print(f"exported {name} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        sizes[name] = (work / name / "model.onnx").stat().st_size
        sizes[name + " memory"] = memory_bytes(work / name / "model.onnx")
    return sizes


def memory_bytes(path: Path) -> int:
    """Bytes of the neighbour memory's tensors (keys, projection, label table) in a graph."""
    import onnx

    graph = onnx.load(str(path)).graph
    return sum(len(t.raw_data) for t in graph.initializer if t.name.startswith("memory."))


def extractor_codes(args) -> list[dict]:
    """Fraction of 8-bit codes that int8 changes, per extractor, on random weights and real media."""
    import onnxruntime as ort

    from vtag.features import media
    from vtag.features.pca import quantize
    from vtag.features.vggish import log_mel_examples
    from vtag.models.export import export_extractor

    data = REPO.parent / "shared" / "data" / "media"
    frames = np.stack(list(media.sample_frames(data / "bigbuckbunny.mp4", max_frames=args.frames)))
    examples = log_mel_examples(media.read_audio(data / "speech_16k_mono_4s.wav"))
    rows = []
    for kind, x, mode in (("inception", frames, "round"), ("vggish", examples, "truncate")):
        out = {}
        for int8 in (False, True):
            folder = Path(args.work) / f"{kind}-{'int8' if int8 else 'fp32'}"
            result = export_extractor(kind, folder, int8=int8, random_weights=True, frame_size=frames.shape[1:3])
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
            started = time.perf_counter()
            features = session.run(None, {session.get_inputs()[0].name: x})[0]
            out[int8] = (quantize(features, mode), result.graph_bytes, (time.perf_counter() - started) / len(x))
        changed = out[True][0] != out[False][0]
        rows.append({"extractor": kind, "inputs": len(x), "input_shape": list(x.shape[1:]),
                     "codes_changed": float(changed.mean()),
                     "codes_off_by_more_than_1": float((np.abs(out[True][0].astype(int) - out[False][0]) > 1).mean()),
                     "fp32_mb": out[False][1] / 1e6, "int8_mb": out[True][1] / 1e6,
                     "fp32_ms_per_input": 1e3 * out[False][2], "int8_ms_per_input": 1e3 * out[True][2]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--records", default=HELD_OUT, help="held-out labelled records (glob)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls-1", type=int, default=100)
    parser.add_argument("--calls-64", type=int, default=20)
    parser.add_argument("--frames", type=int, default=4, help="video frames for the extractor comparison")
    parser.add_argument("--work", default="/tmp/vtag-bench-onnx", help="exports and scores go here")
    parser.add_argument("--skip-extractors", action="store_true")
    parser.add_argument("--worker", choices=RUNTIMES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    Path(args.work).mkdir(parents=True, exist_ok=True)
    sizes = prepare(args)
    results = []
    for runtime in RUNTIMES:
        command = [sys.executable, __file__, "--worker", runtime, "--records", args.records, "--threads",
                   str(args.threads), "--calls-1", str(args.calls_1), "--calls-64", str(args.calls_64),
                   "--work", args.work] + (["--model", args.model] if args.model else [])
        done = subprocess.run(command, capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
        if done.returncode:
            sys.exit(f"{runtime} failed:\n{done.stderr[-2000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    scores = {r: np.load(Path(args.work) / f"scores-{r}.npy") for r in RUNTIMES}
    top = {r: np.argsort(-s, axis=1, kind="stable")[:, :20] for r, s in scores.items()}
    reference = results[0]
    print(f"{'runtime':<12} {'size MB':>8} {'ms/video b1':>12} {'ms/video b64':>13} {'peak RSS MB':>12} "
          f"{'GAP':>8} {'dGAP':>8} {'top-20 order':>13} {'top-20 set':>11} {'top-1':>6}")
    for r in results:
        name = r["runtime"]
        same = float((top[name] == top["torch-fp32"]).all(1).mean())
        same_set = float(np.mean([set(a) == set(b) for a, b in zip(top[name], top["torch-fp32"])]))
        same_1 = float((top[name][:, 0] == top["torch-fp32"][:, 0]).mean())
        print(f"{name:<12} {sizes[name] / 1e6:8.1f} {r['ms_per_video_b1']:12.3f} {r['ms_per_video_b64']:13.3f} "
              f"{r['peak_rss_mb']:12.0f} {r['gap']:8.4f} {r['gap'] - reference['gap']:+8.4f} {same:13.3f} "
              f"{same_set:11.3f} {same_1:6.3f}")
    fp32, int8 = results[1], results[2]
    print(f"int4 / fp32 ONNX size: {sizes['onnx-int4'] / sizes['onnx-fp32']:.3f}")
    print(f"held-out videos: {reference['videos']}; int8 / fp32 ONNX size: {sizes['onnx-int8'] / sizes['onnx-fp32']:.3f}; "
          f"int8 GAP - onnx fp32 GAP: {int8['gap'] - fp32['gap']:+.4f}; torch-fp32 size is the shipped "
          f"model.safetensors (4-bit weights, float32 once loaded)")
    net = {k: sizes[k] - sizes[k + " memory"] for k in ("onnx-fp32", "onnx-int8", "onnx-int4")}
    print(f"of which the neighbour memory: {sizes['onnx-fp32 memory'] / 1e6:.1f} MB (fp32 export), "
          f"{sizes['onnx-int8 memory'] / 1e6:.1f} MB (int8 export); the networks alone: int8 / fp32 = "
          f"{net['onnx-int8'] / net['onnx-fp32']:.3f}")
    print("rss_before_model_mb (records loaded, imports done): "
          + ", ".join(f"{r['runtime']} {r['rss_before_model_mb']:.0f}" for r in results))
    if not args.skip_extractors:
        for row in extractor_codes(args):
            print(f"{row['extractor']} (random weights, {row['inputs']} inputs {row['input_shape']}): "
                  f"{100 * row['codes_changed']:.2f}% of 8-bit codes change under int8 "
                  f"({100 * row['codes_off_by_more_than_1']:.2f}% by more than 1); "
                  f"{row['fp32_mb']:.1f} MB -> {row['int8_mb']:.1f} MB; "
                  f"{row['fp32_ms_per_input']:.1f} -> {row['int8_ms_per_input']:.1f} ms per input")


if __name__ == "__main__":
    main()
