"""vtag: tag videos with YouTube-8M labels using audio-visual fusion models.

The Python API (the CLI is a thin layer over these):

    import vtag
    for p in vtag.classify(["examples/yt8m-2018-sample.tfrecord"], top_k=3):
        print(p.source, [(l.name, round(l.score, 3)) for l in p.labels])
    vtag.evaluate("examples/yt8m-2018-sample.tfrecord")["gap"]
    features = vtag.extract("movie.mp4")            # per-second rgb [T, 1024] and audio [T, 128]
    model, config = vtag.load_model("weights/default")
    vtag.train(vtag.TrainConfig(train=["train/*.tfrecord"], valid=["valid/*.tfrecord"]))

Each function imports its stage on first use, so `import vtag` stays cheap. The packages below follow
the data path, each importing only from those before it: `vtag.io` (records, vocabularies, files) ->
`vtag.features` (decoding, Inception, VGGish, PCA) -> `vtag.models` (registry, storage, memory) ->
`vtag.tasks` (train, evaluate, classify, batch) -> `vtag.cli` (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # annotations only: every stage is imported when first used
    from vtag.features.extract import VideoFeatures
    from vtag.tasks.classify import Prediction
    from vtag.tasks.train import TrainConfig, TrainResult

__all__ = ["classify", "extract", "train", "evaluate", "load_model", "TrainConfig", "__version__"]


def classify(inputs: str | Path | Iterable[str | Path], model: str | Path | None = None, top_k: int = 5,
             device: str = "auto", random_weights: bool = False, skip_bad: bool = False,
             segments: float | None = None, thumbnails: int = 0) -> Iterator[Prediction]:
    """Tag video/audio files, or every record of YT8M record files: one `Prediction` per video.
    `model` is a model folder or a trained registry name; None is the shipped default.
    `segments=5` adds `Prediction.segments`: labels per 5-second window (frame-level records need no
    decoding); `thumbnails=N` keeps up to N small keyframes of each media file in `Prediction.thumbnails`."""
    from vtag.tasks.classify import classify_paths

    paths = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    return classify_paths(paths, model=model, top_k=top_k, device=device, random_weights=random_weights,
                          skip_bad=skip_bad, segments=segments, thumbnails=thumbnails)


def extract(video: str | Path, random_weights: bool = False, device: str = "cpu") -> VideoFeatures:
    """YT8M features of one video file: per-second `rgb` [T, 1024] and `audio` [T, 128], after PCA.
    Needs the official extractor weights (`vtag weights pull`) unless `random_weights`."""
    from vtag.features.extract import extract_file

    return extract_file(video, random_weights=random_weights, device=device)


def train(config: TrainConfig, progress: bool = False) -> TrainResult:
    """Train a registry model on YT8M records as `config` (a `vtag.TrainConfig`) says."""
    from vtag.tasks.train import train as run_training

    return run_training(config, progress=progress)


def evaluate(records: str | Path | Iterable[str | Path], model: str | Path | None = None,
             **options: Any) -> dict:
    """GAP@20, Hit@1, PERR, mAP and F1 of `model` (None: the shipped default) on labelled records;
    `options` are those of `vtag.tasks.evaluate.evaluate` (batch_size, device, threshold, ...)."""
    from vtag.tasks.evaluate import evaluate as run_evaluation

    return run_evaluation(records, model=model, **options)


def load_model(path: str | Path | None = None, device: str = "cpu"):
    """(model, config.json contents) of a model folder, a trained registry name, or None: the
    shipped default. The model is in eval mode."""
    from vtag.models.storage import load_model as load, resolve_model_dir

    model, meta = load(resolve_model_dir(path), map_location=device)
    return model.eval(), meta


def __getattr__(name: str):
    if name == "TrainConfig":  # a class users build before calling train(); loaded on first use
        from vtag.tasks.train import TrainConfig

        return TrainConfig
    raise AttributeError(f"module 'vtag' has no attribute {name!r}")
