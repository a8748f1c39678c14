"""Video file -> YouTube-8M features: per-second rgb [T, 1024] and audio [T, 128], quantized.

    frames (media.sample_frames) -> TF1 resize to 299x299 -> Inception pool_3 (in batches)
        -> YT8M PCA + whitening -> quantize, rounding (YT8M's own quantizer)
    audio (media.read_audio, 16 kHz mono) -> log-mel examples, 0.96 s every 1.0 s -> VGGish
        -> VGGish PCA -> quantize, truncating (AudioSet's VGGish postprocessor and MediaPipe's YT8M
           graph both cast to uint8; YT8M's visual quantizer rounds)

Rows: one per sampled frame (T <= max_frames). Audio row t is the 0.96 s starting at second t, so it
pairs with the frame sampled just after second t. YT8M frame-level records hold equal-length rgb
and audio, so audio is cut to T rows, and where it is shorter (the last partial second, or a short
track) it is padded with the quantized code of 0.0. A file without video gets T = its number of
audio seconds (at most max_frames) and rgb rows of quantized 0.0; without audio, audio rows of
quantized 0.0; `has_video` / `has_audio` say which. Video-level means (`mean_rgb`, `mean_audio`) are
means of the float features before quantization over the real rows only (0.0 for a missing track).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from vtag.features import media
from vtag.features.overlap import Job, ahead
from vtag.errors import VtagError
from vtag.devices import resolve_device

RGB_QUANTIZE = "round"
AUDIO_QUANTIZE = "truncate"
DEFAULT_BATCH_SIZE = 16  # frames per Inception call: past ~8 the CPU kernels gain little
VGGISH_BATCH_SIZE = 64

ProgressFn = Callable[[float, float | None], None]  # (seconds processed, total seconds or None)


@dataclass
class VideoFeatures:
    """One file's YT8M features. `rgb` uint8 [T, 1024], `audio` uint8 [T, 128]; `mean_rgb` /
    `mean_audio` float32 means of the unquantized features (what a video-level record holds)."""

    id: str
    rgb: np.ndarray
    audio: np.ndarray
    has_video: bool
    has_audio: bool
    duration_s: float | None
    random_weights: bool
    mean_rgb: np.ndarray = field(repr=False, default=None)
    mean_audio: np.ndarray = field(repr=False, default=None)
    frame_times_s: np.ndarray | None = field(repr=False, default=None)
    audio_rows: int = 0  # real audio rows before padding/truncation to T
    path: Path | None = None

    @property
    def num_frames(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def missing(self) -> list[str]:
        return [name for name, has in (("video", self.has_video), ("audio", self.has_audio)) if not has]

    def to_record(self, level: str = "frame", labels: np.ndarray | None = None):
        """A records.YT8MRecord: frame-level with the quantized rows, or video-level with the means."""
        from vtag.io.records import YT8MRecord

        if level == "frame":
            return YT8MRecord(self.id, labels, self.rgb, self.audio, level="frame", provenance=self.provenance())
        if level == "video":
            return YT8MRecord(self.id, labels, self.mean_rgb, self.mean_audio, level="video",
                              provenance=self.provenance())
        raise VtagError(f"level must be 'frame' or 'video', not {level!r}")

    def provenance(self) -> dict[str, str]:
        """How these features were made, written into each record (vtag.io.records.PROVENANCE_KEYS):
        a record of random or zero-filled features must say so wherever it goes."""
        from vtag.io.user_weights import unverified_marks

        made = "random" if self.random_weights else None
        own = unverified_marks() if self.has_audio and not made else []  # a user's VGGish / PCA, if used
        return {"vtag_extractor": made or "; ".join([official_extractor(), *own]),
                "vtag_video": (made or "inception") if self.has_video else "zeros",
                "vtag_audio": (made or "vggish") if self.has_audio else "zeros"}


@functools.lru_cache(maxsize=1)
def official_extractor() -> str:
    """The official visual weights by their published sha256 (the files are verified against these
    before they are used): the Inception network, and the YT8M PCA's mean (its archive has no digest)."""
    from vtag.features.inception import WEIGHT_FILE
    from vtag.features.pca import YT8M_PCA_FILE
    from vtag.weights import WEIGHT_FILES

    pca_mean = next(m.sha256 for m in WEIGHT_FILES[YT8M_PCA_FILE].members if m.name == "mean.npy")
    return f"{WEIGHT_FILE} sha256:{WEIGHT_FILES[WEIGHT_FILE].sha256}; {YT8M_PCA_FILE} mean.npy sha256:{pca_mean}"


def pooled(features: VideoFeatures, spec: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """Model inputs from extracted features, exactly as from a frame-level record: dequantize the
    rows, then records.pool_frames (so a video and its written record give the same vector)."""
    from vtag.features.pca import dequantize
    from vtag.io.records import pool_frames

    return pool_frames(dequantize(features.rgb), dequantize(features.audio), spec)


def _fuse_batch_norm(model: nn.Module) -> nn.Module:
    """Fold each conv + eval-mode batch norm into the conv (weights scaled, a bias added), in place:
    one pass over the activations instead of two. Changes float32 rounding only (~1e-6 relative)."""
    from vtag.features.inception import BasicConv2d

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, BasicConv2d) and isinstance(module.bn, nn.BatchNorm2d):
                conv, bn = module.conv, module.bn
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                shift = bn.bias - bn.running_mean * scale
                if conv.bias is not None:
                    shift = shift + conv.bias * scale
                conv.weight.mul_(scale[:, None, None, None])
                conv.bias = nn.Parameter(shift)
                module.bn = nn.Identity()
    return model.eval()


@functools.lru_cache(maxsize=2)
def _load_networks(random_weights: bool, device: str, fuse: bool):
    """Both networks and PCAs, prepared for inference; cached so that a process making several
    extractors (tagging, tests) loads and prepares them once. They are only ever read."""
    from vtag.features.pca import load_vggish_pca, load_yt8m_pca
    from vtag.features.inception import load_inception
    from vtag.features.vggish import load_vggish

    inception = load_inception(random_weights=random_weights, device=device)
    # Channels-last lets the CPU (oneDNN) and GPU (cuDNN) convolutions run without layout
    # shuffles: about 1.5x on this network on CPU.
    inception = (_fuse_batch_norm(inception) if fuse else inception).to(memory_format=torch.channels_last)
    return (inception, load_yt8m_pca(random_weights=random_weights),
            load_vggish(random_weights=random_weights, device=device), load_vggish_pca(random_weights=random_weights))


class FeatureExtractor:
    """Loads Inception + YT8M PCA and VGGish + its PCA once; `extract(path)` turns a file into
    `VideoFeatures`. `random_weights` uses seeded random networks and PCAs (pipeline tests and
    benchmarks only: the features mean nothing). Missing weight files raise VtagError naming
    `vtag weights`."""

    def __init__(self, random_weights: bool = False, device: str | torch.device = "cpu",
                 max_frames: int = media.YT8M_MAX_FRAMES, batch_size: int = DEFAULT_BATCH_SIZE,
                 fuse: bool = True) -> None:
        if max_frames < 1:
            raise VtagError(f"max_frames must be at least 1, got {max_frames}")
        if batch_size < 1:
            raise VtagError(f"batch_size must be at least 1, got {batch_size}")
        self.device = torch.device(resolve_device(str(device)))
        self.random_weights = random_weights
        self.max_frames = max_frames
        self.batch_size = batch_size
        self.inception, self.yt8m_pca, self.vggish, self.vggish_pca = _load_networks(
            random_weights, str(self.device), fuse)

    # ---- the stages, usable on their own (vtag batch decodes in worker processes) ----------------

    def _inception_batch(self, batch: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            pool3 = self.inception.pool3(batch.contiguous(memory_format=torch.channels_last))
            return np.asarray(self.yt8m_pca(pool3.cpu().numpy()), dtype=np.float32)

    def visual_features(self, frames: np.ndarray | Iterable[np.ndarray]) -> np.ndarray:
        """uint8 RGB frames ([B, H, W, 3] or an iterable of [H, W, 3]) -> float32 [B, 1024] (PCA'd and
        whitened, not quantized)."""
        return self._visual_from_inputs(self._preprocess(frame) for frame in frames)

    def _preprocess(self, frame: np.ndarray) -> torch.Tensor:
        # one frame at a time: only 299x299 floats per frame are held for the batch
        return self.inception.preprocess(torch.as_tensor(frame)[None])[0]

    def _visual_from_inputs(self, inputs: Iterable[torch.Tensor]) -> np.ndarray:
        out = [np.zeros((0, 1024), np.float32)]
        pending: list[torch.Tensor] = []
        for x in inputs:
            pending.append(x)
            if len(pending) == self.batch_size:
                out.append(self._inception_batch(torch.stack(pending)))
                pending = []
        if pending:
            out.append(self._inception_batch(torch.stack(pending)))
        return np.concatenate(out)

    def preprocessed_features(self, inputs: np.ndarray) -> np.ndarray:
        """Frames already through `inception.preprocess_frames` (float32 [B, 3, 299, 299]) -> float32
        [B, 1024], as `visual_features` gives for the frames they came from."""
        out = [np.zeros((0, 1024), np.float32)]
        for start in range(0, len(inputs), self.batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(inputs[start:start + self.batch_size], np.float32))
            out.append(self._inception_batch(chunk.to(self.device)))
        return np.concatenate(out)

    def _audio_of(self, path, seconds: float) -> np.ndarray:
        from vtag.features.vggish import log_mel_examples

        return self.audio_features(log_mel_examples(media.read_audio(path, max_seconds=seconds)))

    def audio_features(self, examples: np.ndarray) -> np.ndarray:
        """log-mel examples [N, 96, 64] -> float32 [N, 128] (VGGish, then its PCA; not quantized)."""
        out = [np.zeros((0, 128), np.float32)]
        with torch.inference_mode():
            for start in range(0, len(examples), VGGISH_BATCH_SIZE):
                chunk = torch.from_numpy(np.ascontiguousarray(examples[start:start + VGGISH_BATCH_SIZE]))
                embeddings = self.vggish(chunk.to(self.device)).cpu().numpy()
                out.append(np.asarray(self.vggish_pca(embeddings), dtype=np.float32))
        return np.concatenate(out)

    def assemble(self, video_id: str, visual: np.ndarray | None, audio: np.ndarray | None,
                 duration_s: float | None, path: str | Path | None = None,
                 frame_times_s: np.ndarray | None = None) -> VideoFeatures:
        """Float features of one file -> VideoFeatures with the row rules in this module's docstring.
        `visual` None means the file has no video track, `audio` None no audio track."""
        return assemble_features(video_id, visual, audio, duration_s, self.max_frames, self.random_weights,
                                 path=path, frame_times_s=frame_times_s)

    # ---- one file, end to end -------------------------------------------------------------------

    def extract(self, path: str | Path, progress: ProgressFn | None = None,
                on_frame: Callable[[float, np.ndarray], None] | None = None) -> VideoFeatures:
        """Decode, run both networks and quantize one file. Raises VtagError naming the file when it
        cannot be read or holds nothing to extract. `on_frame(time_s, rgb)` sees each sampled frame
        (e.g. a thumbnails.ThumbnailKeeper) before it is dropped."""
        from vtag.io.remote import is_url, stem

        path = path if is_url(path) else Path(path)
        video_id = stem(path) if isinstance(path, str) else path.stem
        info = media.probe(path)
        total = info.duration_s
        if total is not None:
            total = min(total, float(self.max_frames))
        visual = frame_times = None
        audio_job: Job | None = None
        planned_rows: list[int] = []
        try:
            if info.has_video:
                times: list[float] = []

                def start_audio(count: int) -> None:
                    # The plan knows the row count before decoding, so the audio (which stops at that
                    # many seconds) runs beside the video instead of after it.
                    nonlocal audio_job
                    planned_rows.append(count)
                    if info.has_audio and count:
                        audio_job = Job(self._audio_of, path, count + 1)

                def decoded() -> Iterator[tuple[float, torch.Tensor]]:
                    # Runs in the decoding thread: decode, convert and resize there, so the frames
                    # queued for Inception are 299x299 whatever the video's size.
                    for frame in media.sample_frames_timed(path, max_frames=self.max_frames, on_plan=start_audio):
                        if on_frame is not None:
                            on_frame(frame.time_s, frame.rgb)
                        yield frame.time_s, self._preprocess(frame.rgb)

                def inputs() -> Iterator[torch.Tensor]:
                    for time_s, x in ahead(decoded(), depth=self.batch_size):
                        times.append(time_s)
                        if progress is not None:
                            progress(time_s, total)
                        yield x

                visual = self._visual_from_inputs(inputs())
                frame_times = np.asarray(times)
                if len(visual) == 0:
                    if not info.has_audio:
                        raise VtagError(f"{path}: the video track has no decodable frames")
                    visual = None  # nothing to show: treat as audio-only rather than lose the file
            audio = None
            if info.has_audio:
                # Audio past the last visual row would be cut anyway; audio-only files stop at max_frames s.
                seconds = len(visual) if visual is not None else self.max_frames
                if audio_job is not None and visual is not None and planned_rows == [len(visual)]:
                    audio = audio_job.result()
                else:
                    audio = self._audio_of(path, seconds + 1)
        finally:
            if audio_job is not None:
                audio_job.join()  # a file that failed leaves no work running behind it
        if progress is not None and total is not None:
            progress(total, total)
        return self.assemble(video_id, visual, audio, info.duration_s, path=path, frame_times_s=frame_times)


def assemble_features(video_id: str, visual: np.ndarray | None, audio: np.ndarray | None,
                      duration_s: float | None, max_frames: int = media.YT8M_MAX_FRAMES,
                      random_weights: bool = False, path: str | Path | None = None,
                      frame_times_s: np.ndarray | None = None) -> VideoFeatures:
    from vtag.features.pca import quantize

    where = path or video_id
    if visual is None and audio is None:
        raise VtagError(f"{where}: has neither video nor audio to extract features from")
    if visual is not None:
        visual = np.asarray(visual, np.float32)[:max_frames]
        rows = len(visual)
    else:
        audio = np.asarray(audio, np.float32)[:max_frames]
        rows = len(audio)
        if rows == 0:
            raise VtagError(f"{where}: audio-only and shorter than one 0.96 s VGGish example; nothing to extract")
    rgb_q = quantize(visual, RGB_QUANTIZE) if visual is not None else _zero_rows(rows, 1024, RGB_QUANTIZE)
    if visual is not None and rows:
        mean_rgb = visual.mean(axis=0, dtype=np.float64).astype(np.float32)
    else:
        mean_rgb = np.zeros(1024, np.float32)
    audio_rows = 0
    if audio is not None:
        audio = np.asarray(audio, np.float32)
        audio_rows = min(len(audio), rows)
        real = audio[:audio_rows]
        audio_q = np.concatenate([quantize(real, AUDIO_QUANTIZE), _zero_rows(rows - audio_rows, 128, AUDIO_QUANTIZE)])
        mean_audio = real.mean(axis=0, dtype=np.float64).astype(np.float32) if audio_rows else np.zeros(128, np.float32)
    else:
        audio_q = _zero_rows(rows, 128, AUDIO_QUANTIZE)
        mean_audio = np.zeros(128, np.float32)
    return VideoFeatures(
        id=video_id, rgb=rgb_q, audio=audio_q, has_video=visual is not None, has_audio=audio is not None,
        duration_s=duration_s, random_weights=random_weights, mean_rgb=mean_rgb, mean_audio=mean_audio,
        frame_times_s=frame_times_s, audio_rows=audio_rows, path=_as_path(path))


def _as_path(path):
    from vtag.io.remote import is_url

    return None if path is None else path if is_url(path) else Path(path)


def _zero_rows(rows: int, dim: int, mode: str) -> np.ndarray:
    from vtag.features.pca import quantize

    return np.repeat(quantize(np.zeros((1, dim), np.float32), mode), rows, axis=0)


def extract_file(path: str | Path, random_weights: bool = False, device: str = "cpu",
                 max_frames: int = media.YT8M_MAX_FRAMES) -> VideoFeatures:
    """One-off convenience: load the extractors and extract one file (use FeatureExtractor for many)."""
    return FeatureExtractor(random_weights=random_weights, device=device, max_frames=max_frames).extract(path)


# ---- many files into one record file (`vtag extract`) -----------------------------------------------


@dataclass(frozen=True)
class ExtractedFile:
    """What `vtag extract` reports about one file written (the features themselves go to disk)."""

    path: Path
    id: str
    num_frames: int
    has_video: bool
    has_audio: bool
    audio_rows: int
    duration_s: float | None


@dataclass
class ExtractSummary:
    output: Path
    level: str
    written: list[ExtractedFile]
    failed: list[tuple[Path, str]]
    random_weights: bool
    seconds: float
    shards: list[Path] = field(default_factory=list)  # with records_per_shard: the shard files written


def extract_to_records(paths: Iterable[str | Path], output: str | Path, level: str = "frame",
                       extractor: FeatureExtractor | None = None,
                       on_start: Callable[[Path], None] | None = None,
                       on_progress: Callable[[Path, float, float | None], None] | None = None,
                       on_done: Callable[[Path, VideoFeatures | None, str | None], None] | None = None,
                       shard: str | None = None, records_per_shard: int | None = None,
                       results_from: Callable | None = None,
                       **extractor_args) -> ExtractSummary:
    """Extract every file and write one YT8M record per file that worked into `output`
    (records.write_records: atomic, so a crash never leaves half a file). A file that fails is
    reported through `on_done(path, None, error)` and the others go on; when every file fails,
    nothing is written. Records are streamed to the writer, so memory does not grow with the
    number of files. The ids are the files' stems; two inputs with one stem are an error up front.
    `shard` "I/N" extracts this job's share (vtag.io.shard: by each path as given); `records_per_shard`
    writes numbered shards and a manifest, skipping videos already in it (vtag.io.record_shards);
    `results_from(todo, extractor)`, when given, yields (index, features, error) per file in place
    of extracting here (vtag.tasks.distributed.extract_on_ray runs them on Ray)."""
    from vtag.io.records import write_records
    from vtag.io.remote import is_url, stem as url_stem
    from vtag.io.shard import parse_shard, select_shard

    if level not in ("frame", "video"):
        raise VtagError(f"--level {level}: use frame or video")
    paths = [p if is_url(p) else Path(p) for p in paths]
    if not paths:
        raise VtagError("no input files given")
    if shard is not None:
        names = [str(p) for p in paths]
        chosen = set(select_shard(names, names, parse_shard(shard)))
        paths = [p for p in paths if str(p) in chosen]
    stems: dict[str, Path] = {}
    for p in paths:
        p_stem = url_stem(p) if isinstance(p, str) else p.stem
        if p_stem in stems and stems[p_stem] != p:
            raise VtagError(f"{p} and {stems[p_stem]} would both get id '{p_stem}': rename one")
        stems[p_stem] = p
    output = Path(output)
    if output.is_dir():
        raise VtagError(f"{output}: is a directory; give a file name such as {output / 'features.tfrecord'}")
    if not output.parent.exists():
        raise VtagError(f"{output.parent}: output folder does not exist")
    sharded = None
    if records_per_shard is not None:
        from vtag.io.record_shards import ShardedRecordWriter

        sharded = ShardedRecordWriter(output, records_per_shard, level)
        paths = [p for p in paths if str(p) not in sharded.done]
    extractor = extractor or FeatureExtractor(**extractor_args)
    started = time.perf_counter()
    summary = ExtractSummary(output, level, [], [], extractor.random_weights, 0.0)

    def results() -> Iterator[tuple[Path, VideoFeatures | None, str | None]]:
        todo = list(dict.fromkeys(paths))
        if results_from is not None:
            for index, features, error in results_from(todo, extractor):
                if on_start is not None:
                    on_start(todo[index])
                if features is not None:
                    features.path = todo[index]  # the path as given, not the worker's absolute one
                yield todo[index], features, error
            return
        for path in todo:
            if on_start is not None:
                on_start(path)
            progress = (lambda done, total, _p=path: on_progress(_p, done, total)) if on_progress else None
            try:
                yield path, extractor.extract(path, progress=progress), None
            except VtagError as exc:
                yield path, None, str(exc)

    def extracted() -> Iterator[VideoFeatures]:
        for path, features, error in results():
            if error is not None:
                summary.failed.append((path, error))
                if on_done is not None:
                    on_done(path, None, error)
                continue
            summary.written.append(ExtractedFile(path, features.id, features.num_frames, features.has_video,
                                                 features.has_audio, features.audio_rows, features.duration_s))
            if on_done is not None:
                on_done(path, features, None)
            yield features

    stream = extracted()
    if sharded is not None:
        for features in stream:
            sharded.add(str(features.path), features)  # the path as given: the manifest's key
        sharded.flush()
        summary.shards = sharded.written
        summary.seconds = time.perf_counter() - started
        return summary
    first = next(stream, None)  # only start a file once something will go into it
    if first is not None:
        def records():
            yield first.to_record(level)
            for features in stream:
                yield features.to_record(level)

        write_records(output, records(), level=level)
    summary.seconds = time.perf_counter() - started
    return summary
