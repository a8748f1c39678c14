"""Scoring a trained model on labelled YT8M record files: GAP@20, Hit@1, PERR, mAP and F1.

`evaluate(records)` uses the shipped default model; `model` may also be a run folder written by
`vtag train` (or its config.json) or a registry name trained into runs/NAME. Video-level records are
read into memory arrays in one pass (the fast path); frame-level records are pooled to the model's
input spec.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vtag.errors import VtagError
from vtag.tasks.metrics import EvaluationMetrics


def load_for_evaluation(model=None, device: str = "auto", runtime: str = "torch", vocabulary: str = "2018"):
    """(model in eval mode on `device`, its config.json dict, the model folder); no `model`: the shipped
    model of `vocabulary`. With runtime "onnx", an onnxruntime scorer of the exported model instead
    (vtag/tasks/onnx_runtime.py) and its export folder."""
    if runtime != "torch":
        from vtag.tasks.onnx_runtime import check_runtime, load_onnx_scorer

        check_runtime(runtime)
        return load_onnx_scorer(model)
    from vtag.models.storage import resolve_model_dir
    from vtag.models.storage import load_model

    directory = resolve_model_dir(model, vocabulary)
    net, meta = load_model(directory, map_location=device)
    net.eval()
    return net, meta, directory


def load_features(records, input_spec: str, num_classes: int, skip_bad: bool = False):
    """(visual float32 [N, Dv], audio float32 [N, Da], labels: list of index arrays) of record files."""
    from vtag.io.fast_reader import read_video_level_arrays
    from vtag.io.paths import expand_paths
    from vtag.io.records import no_records, read_records
    from vtag.io.tfrecord import ReadStats

    paths = expand_paths(records)
    if not paths:
        raise VtagError(f"no record files match {records!r}: give .tfrecord files, folders or globs")
    stats = ReadStats()
    if input_spec == "mean":
        try:
            arrays = read_video_level_arrays(paths, skip_bad=skip_bad, num_classes=num_classes, stats=stats)
            if not len(arrays):
                raise no_records(paths, stats)
            return arrays.rgb, arrays.audio, arrays.labels
        except VtagError as exc:
            if "frame-level" not in str(exc):
                raise
            stats = ReadStats()
    from vtag.io.records import pool_frames

    visual, audio, labels = [], [], []
    for record in read_records(paths, skip_bad=skip_bad, num_classes=num_classes, stats=stats):
        v, a = pool_frames(record.rgb, record.audio, input_spec)
        visual.append(v)
        audio.append(a)
        labels.append(record.labels)
    if not visual:
        raise no_records(paths, stats)
    return np.stack(visual).astype(np.float32), np.stack(audio).astype(np.float32), labels


def _prepare(records, model, device: str, skip_bad: bool, runtime: str = "torch", vocabulary: str | None = None):
    from vtag.devices import resolve_device
    from vtag.io.paths import expand_paths
    from vtag.tasks.vocab_match import records_vocabulary, require_vocabulary

    device = resolve_device(device)
    paths = expand_paths(records)
    if not paths:
        raise VtagError(f"no record files match {records!r}: give .tfrecord files, folders or globs")
    found = records_vocabulary(paths, vocabulary, skip_bad)
    net, meta, directory = load_for_evaluation(model, device, runtime, found)
    require_vocabulary(meta, directory, found, ", ".join(map(str, paths[:3])) + (" ..." if len(paths) > 3 else ""))
    records = paths
    config = net.config
    visual, audio, labels = load_features(records, config.input_spec, config.num_classes, skip_bad)
    missing = sum(1 for lab in labels if lab is None)
    if missing:
        raise VtagError(f"{missing} of {len(labels)} records have no labels (test records?): evaluation "
                        "needs labelled records; use `vtag classify` to tag unlabelled ones")
    return net, dict(meta, model_dir=str(directory)), visual, audio, labels, device


def _finite(start: int, scores: np.ndarray) -> tuple[int, np.ndarray]:
    """(start, scores), or VtagError when a score is NaN: NaN ranks anywhere, so its labels would be arbitrary."""
    if not np.isfinite(scores).all():
        row = start + int(np.flatnonzero(~np.isfinite(scores).all(axis=1))[0])
        raise VtagError(f"the model gives NaN scores for video {row} of the input (counting from 0): its weights "
                        "overflow on these features; check the model folder, or that the features are YT8M's")
    return start, scores


def score_batches(net, visual: np.ndarray, audio: np.ndarray, batch_size: int, device: str, dtype):
    """Sigmoid scores batch by batch. float64 keeps confident scores apart: in float32, sigmoid of any
    logit above ~17 is exactly 1.0, and such ties would leave their GAP order to the tie rule."""
    if getattr(net, "runtime", "torch") in ("onnx", "numpy"):  # OnnxScorer, NumpyModel: probabilities already
        for start in range(0, len(visual), batch_size):
            end = start + batch_size
            yield _finite(start, net.probabilities(visual[start:end], audio[start:end]).astype(dtype, copy=False))
        return
    import torch

    with torch.inference_mode():
        for start in range(0, len(visual), batch_size):
            v = torch.as_tensor(np.asarray(visual[start:start + batch_size], np.float32)).to(device)
            a = torch.as_tensor(np.asarray(audio[start:start + batch_size], np.float32)).to(device)
            logits = net(v, a).to(torch.float64 if dtype == np.float64 else torch.float32)
            yield _finite(start, torch.sigmoid(logits).cpu().numpy())


def predict(records, model=None, batch_size: int = 1024, device: str = "auto", skip_bad: bool = False,
            dtype=np.float32, runtime: str = "torch", vocabulary: str | None = None):
    """Sigmoid scores [N, C] (`dtype`) of a model on record files, the records' labels, and the model's
    config.json dict (plus `model_dir`). Records without labels are an error (nothing to score against)."""
    net, meta, visual, audio, labels, device = _prepare(records, model, device, skip_bad, runtime, vocabulary)
    scores = np.empty((len(visual), net.config.num_classes), dtype)
    for start, batch in score_batches(net, visual, audio, batch_size, device, dtype):
        scores[start:start + len(batch)] = batch
    return scores, labels, meta


def evaluate(records, model=None, batch_size: int = 1024, device: str = "auto", threshold: float = 0.5,
             top_k: int = 20, skip_bad: bool = False, runtime: str = "torch", vocabulary: str | None = None,
             on_scored=None) -> dict:
    """Metrics of `model` (None: the shipped default) on labelled record files, as
    `EvaluationMetrics.summary()` plus `model` (its folder), `model_name` and `vocabulary`. With no
    `model`, the shipped model of the records' vocabulary; another vocabulary's model is refused.
    Scores are float64. `on_scored(videos scored, videos)` is called after each batch."""
    if not 0.0 <= threshold <= 1.0:
        raise VtagError(f"--threshold {threshold} is not a probability: use a value in [0, 1]")
    if batch_size < 1:
        raise VtagError(f"--batch-size must be >= 1, got {batch_size}")
    net, meta, visual, audio, labels, device = _prepare(records, model, device, skip_bad, runtime, vocabulary)
    metrics = EvaluationMetrics(net.config.num_classes, top_k=top_k, threshold=threshold)
    for start, scores in score_batches(net, visual, audio, batch_size, device, np.float64):
        if not np.isfinite(scores).all():  # metrics of NaN scores would look like a (bad) model's
            raise VtagError(f"{meta['model_dir']}: the model's scores are not numbers (NaN) for some of the "
                            "records: the model is broken; retrain it or give another --model")
        metrics.accumulate(scores, labels[start:start + len(scores)])
        if on_scored is not None:
            on_scored(start + len(scores), len(visual))
    result = metrics.summary()
    result["model"] = str(Path(meta["model_dir"]))
    result["model_name"] = meta.get("name", "")
    result["runtime"] = runtime
    result["vocabulary"] = str(meta.get("vocabulary", "2018"))
    return result
