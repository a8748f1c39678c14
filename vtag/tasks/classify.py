"""Tagging: videos, audio files and YouTube-8M record files in, top labels out.

`Tagger` pairs a fusion model with its vocabulary (and, lazily, the feature extractors, so tagging
records needs no extractor weights). `classify_paths` tags inputs one by one; `run_batch` tags whole
folders, resumably, with decoding in worker processes (see `vtag.tasks.batch`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vtag.errors import VtagError

log = logging.getLogger("vtag.tasks.classify")

RECORD_SUFFIXES = {".tfrecord", ".tfrec", ".record", ".tfrecords"}
MEDIA_SUFFIXES = {
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".wmv", ".mpg", ".mpeg", ".ts", ".mts",
    ".3gp", ".ogv", ".mp3", ".wav", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".wma",
}


@dataclass
class LabelScore:
    id: int
    name: str
    score: float
    vertical: str | None = None


@dataclass
class Prediction:
    source: str  # the media file's path, or the record's id for record inputs
    labels: list[LabelScore]
    model: str
    path: str = ""  # the file the prediction came from
    missing: list[str] = field(default_factory=list)  # "audio" and/or "video"
    random_weights: bool = False
    segments: list | None = None  # [segments.Segment] when asked for (--segments)
    provenance: dict | None = None  # how a record's features were made (vtag extract), if it says
    thumbnails: list = field(default_factory=list, repr=False)  # [(time_s, small rgb)] when asked for
    vocabulary: str = ""  # the vocabulary's source ("2018", "2017" or a CSV's name)

    def to_json(self) -> dict:
        out = {
            "source": self.source,
            "path": self.path,
            "model": self.model,
            **({"vocabulary": self.vocabulary} if self.vocabulary else {}),
            "labels": [asdict(label) for label in self.labels],
            "missing": self.missing,
        }
        if self.random_weights:
            out["random_weights"] = True
            out["warning"] = "features from randomly initialised extractors: labels are not meaningful"
        if self.provenance:
            from vtag.io.records import provenance_warnings

            out["provenance"] = self.provenance
            out["warnings"] = provenance_warnings(self.provenance)
        if self.segments is not None:
            out["segments"] = [segment.to_json() for segment in self.segments]
        return out


class Tagger:
    """A trained fusion model with its vocabulary, ready to score pooled features."""

    def __init__(self, model: str | Path | None = None, device: str = "auto", random_weights: bool = False,
                 runtime: str = "torch", vocabulary: str | None = None):
        """`vocabulary` (--vocab): the labels wanted for raw videos; with no `model`, it picks the shipped
        model of that vocabulary, and a `model` of another vocabulary is refused. `runtime`: torch, onnx,
        numpy (vtag.models.numpy_runtime), or auto: numpy where it can run the model on the CPU, else torch."""
        from vtag.tasks.evaluate import load_for_evaluation
        from vtag.tasks.vocab_match import check_vocabulary_name, require_vocabulary
        from vtag.devices import resolve_device
        from vtag.io.vocab import load_vocabulary

        self.requested = check_vocabulary_name(vocabulary)  # None: whatever the model speaks
        self.chosen_model = model
        if runtime not in ("auto", "torch", "numpy", "onnx"):
            raise VtagError(f"--runtime {runtime}: use auto, torch, numpy or onnx")
        loaded = None
        if runtime in ("auto", "numpy"):  # the model in NumPy where it runs there: no torch import
            from vtag.models.numpy_runtime import load_if_supported

            loaded = load_if_supported(model, device, runtime, self.requested or "2018")
        if loaded is not None:
            self.device = "cpu"
            self.model, meta, self.model_dir = loaded
        else:
            self.device = resolve_device(device)
            self.model, meta, self.model_dir = load_for_evaluation(
                model, self.device, "torch" if runtime == "auto" else runtime, self.requested or "2018")
        if self.requested is not None:
            require_vocabulary(meta, self.model_dir, self.requested, None)
        self.runtime = runtime
        self.model_name = meta.get("name") or self.model.config.name
        self.input_spec = self.model.config.input_spec
        vocab_ref = meta.get("vocabulary", "2018")
        self.vocabulary = load_vocabulary(str(vocab_ref))
        if len(self.vocabulary) != self.model.config.num_classes:
            raise VtagError(
                f"{self.model_dir}: the model predicts {self.model.config.num_classes} classes but its "
                f"vocabulary '{vocab_ref}' has {len(self.vocabulary)}"
            )
        self.random_weights = random_weights
        self._extractor = None
        self._twins: dict[str, Tagger] = {}  # the shipped model of another vocabulary, made when a file needs it

    def for_vocabulary(self, vocabulary: str, source: str) -> "Tagger":
        """This tagger if its model speaks `vocabulary`; with no --model and no --vocab given, the
        shipped model of that vocabulary (sharing the extractors); else a one-line refusal."""
        from vtag.tasks.vocab_match import require_vocabulary

        if self.vocabulary.source == vocabulary:
            return self
        if self.chosen_model is not None or self.requested is not None:
            require_vocabulary({"vocabulary": self.vocabulary.source}, self.model_dir, vocabulary, source)
            return self  # a user's own vocabulary: not ours to second-guess
        twins = self._twins
        if vocabulary not in twins:
            twin = Tagger(None, device=self.device, random_weights=self.random_weights, runtime=self.runtime,
                          vocabulary=vocabulary)
            twin.requested, twin._extractor = None, self._extractor
            twins[vocabulary] = twin
        return twins[vocabulary]

    @property
    def extractor(self):
        if self._extractor is None:
            from vtag.features.extract import FeatureExtractor

            self._extractor = FeatureExtractor(random_weights=self.random_weights, device=self.device)
        return self._extractor

    def scores(self, visual: np.ndarray, audio: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Sigmoid scores [N, classes], in float64 as `vtag eval` computes them (so confident labels
        do not all tie at 1.0)."""
        from vtag.tasks.evaluate import score_batches

        batches = [b for _, b in score_batches(self.model, visual, audio, batch_size, self.device, np.float64)]
        return np.concatenate(batches) if batches else np.zeros((0, len(self.vocabulary)))

    def top_labels(self, scores: np.ndarray, k: int) -> list[LabelScore]:
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        vocab = self.vocabulary
        return [LabelScore(int(i), vocab.name(int(i)), float(scores[i]), vocab.vertical(int(i)) or None) for i in top]

    def pool(self, features) -> tuple[np.ndarray, np.ndarray]:
        """Pooled (visual, audio) vectors of one extracted video in this model's input spec."""
        from vtag.features.extract import pooled

        return pooled(features, self.input_spec)

    def classify_features(self, features, k: int, source: str, path: str) -> Prediction:
        visual, audio = self.pool(features)
        scores = self.scores(visual[None], audio[None])[0]
        missing = [m for m, has in (("video", features.has_video), ("audio", features.has_audio)) if not has]
        return Prediction(source, self.top_labels(scores, k), self.model_name, path, missing, self.random_weights,
                          vocabulary=self.vocabulary.source)


def is_record_file(path: Path | str) -> bool:
    from vtag.io.remote import suffix

    return (suffix(path) if isinstance(path, str) else path.suffix.lower()) in RECORD_SUFFIXES


def classify_records(tagger: Tagger, path: Path, top_k: int, skip_bad: bool = False,
                     segments: float | None = None) -> Iterator[Prediction]:
    from vtag.io.records import no_records, pool_frames, provenance_warnings, read_records
    from vtag.io.tfrecord import ReadStats

    batch: list = []
    stats = ReadStats()

    def flush():
        visual = np.stack([v for _, v, _, _ in batch])
        audio = np.stack([a for _, _, a, _ in batch])
        for ((rid, provenance), _, _, parts), scores in zip(batch, tagger.scores(visual, audio)):
            made = provenance or {}
            missing = [track for track in ("video", "audio") if made.get(f"vtag_{track}") == "zeros"]
            yield Prediction(rid, tagger.top_labels(scores, top_k), tagger.model_name, str(path), missing,
                             made.get("vtag_extractor") == "random", segments=parts, provenance=provenance,
                             vocabulary=tagger.vocabulary.source)
        batch.clear()

    warned: set[str] = set()
    for record in read_records([path], skip_bad=skip_bad, stats=stats):
        for warning in provenance_warnings(record.provenance):
            if warning not in warned:  # once per file, on stderr
                log.warning("warning: %s: %s", path, warning)
                warned.add(warning)
        if record.rgb.ndim == 2:  # frame-level: pool the per-second features like the model expects
            visual, audio = pool_frames(record.rgb, record.audio, tagger.input_spec)
        elif tagger.input_spec != "mean":
            raise VtagError(
                f"{path}: video-level records hold means only, but the model wants '{tagger.input_spec}' "
                "inputs: use a model trained on mean inputs"
            )
        else:
            visual, audio = record.rgb, record.audio
        parts = None
        if segments:
            from vtag.tasks.segments import score_segments

            if record.rgb.ndim != 2:
                raise VtagError(f"{path}: --segments needs frame-level records; video-level ones hold one mean per "
                                "video (`vtag extract --level frame` writes frame-level records)")
            parts = score_segments(tagger, record.rgb, record.audio, segments, top_k=top_k)
        batch.append(((record.id, record.provenance), visual, audio, parts))
        if len(batch) == 512:
            yield from flush()
    if batch:
        yield from flush()
    if not stats.records:  # exit 0 with nothing printed would look like success
        raise no_records([path], stats)


def classify_paths(
    inputs: Iterable[str | Path],
    model: str | Path | None = None,
    top_k: int = 5,
    device: str = "auto",
    random_weights: bool = False,
    skip_bad: bool = False,
    tagger: Tagger | None = None,
    segments: float | None = None,
    thumbnails: int = 0,
    runtime: str = "auto",
    vocabulary: str | None = None,
    on_progress=None,
) -> Iterator[Prediction]:
    """Tag each input: every record of a record file, or a whole media file. Raises VtagError on the
    first input that cannot be read; `run_batch` is the tool for many files that must not stop.
    `segments=S` adds labels per S-second window (vtag.tasks.segments); `thumbnails=N` keeps up to N small
    keyframes of each media file in `Prediction.thumbnails`. Record files are scored by a model of their
    own vocabulary (see `Tagger.for_vocabulary`); `vocabulary` (--vocab) names the labels for raw videos.
    `runtime` "auto": record files alone are scored in NumPy where it runs the model (no PyTorch).
    `on_progress(path, seconds done, total or None)` hears how far the decoding of each media file is."""
    from vtag.io.remote import is_url

    paths = [raw if is_url(raw) else Path(raw) for raw in inputs]
    for path in paths:  # before loading anything: a typo should not cost a model load
        if isinstance(path, str):
            continue  # a URL: checked when it is opened
        if not path.exists():
            raise VtagError(f"{path}: no such file")
        if path.is_dir():
            raise VtagError(f"{path} is a folder: use `vtag batch {path}` to tag every video in it")
    if runtime == "auto" and not all(is_record_file(path) for path in paths):
        runtime = "torch"  # media files need the PyTorch extractors anyway
    tagger = tagger or Tagger(model, device=device, random_weights=random_weights, runtime=runtime, vocabulary=vocabulary)
    for path in paths:
        if is_record_file(path):
            from vtag.tasks.vocab_match import records_vocabulary

            found = records_vocabulary([path], tagger.requested, skip_bad)
            yield from classify_records(tagger.for_vocabulary(found, str(path)), path, top_k, skip_bad, segments)
        else:
            from vtag.tasks.segments import add_segments
            from vtag.features.thumbnails import ThumbnailKeeper

            keeper = ThumbnailKeeper(thumbnails) if thumbnails else None
            progress = (lambda done, total, _p=path: on_progress(_p, done, total)) if on_progress else None
            features = tagger.extractor.extract(path, progress=progress, on_frame=keeper.add if keeper else None)
            prediction = tagger.classify_features(features, top_k, str(path), str(path))
            prediction.thumbnails = keeper.thumbnails() if keeper else []
            yield add_segments(prediction, tagger, features, segments, top_k)


def kaggle_rows(predictions: Iterable[Prediction]) -> Iterator[str]:
    """Google's YT8M submission format: `VideoId,LabelConfidencePairs`, pairs by descending score."""
    from vtag.tasks.csv_output import kaggle_lines

    def rows():
        for p in predictions:
            pairs = " ".join(f"{label.id} {label.score:.6f}" for label in p.labels)
            yield (p.source if p.source != p.path else Path(p.path).stem), pairs

    # through the csv module: an id with a comma, quote or newline is quoted, a formula one neutralised
    yield from kaggle_lines(rows())
