"""Per-segment tags: the model applied to the mean features of each fixed window of a video.

YouTube-8M's 2019 segment task rated 5-second segments; here a video of D analysed seconds gets
ceil(D / seconds) windows [k*s, min((k+1)*s, D)], and each window's rows (one per sampled second) are
pooled exactly as a whole video's are (`records.pool_frames` with the model's input spec) and scored
by the same model. Frame-level records carry the same rows, so they need no decoding. Video-level
records hold one mean per video and have no segments.

"Analysed" matters for long videos: the extractor stops at max_frames seconds (300, as YT8M), and
segments cover what was analysed, not the rest of the file.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from vtag.errors import VtagError

SEGMENT_SECONDS = 5.0  # YouTube-8M 2019's segment length


@dataclass
class Segment:
    start: float
    end: float
    labels: list  # [classify.LabelScore], the window's top k
    scores: np.ndarray = field(repr=False, default=None)  # every class's score (the timeline plots these)

    def to_json(self) -> dict:
        return {"start": round(self.start, 3), "end": round(self.end, 3),
                "labels": [asdict(label) for label in self.labels]}


def check_seconds(seconds: float) -> float:
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
        raise VtagError(f"--segments must be a positive number of seconds, got {seconds}")
    return float(seconds)


def segment_windows(duration_s: float, seconds: float = SEGMENT_SECONDS) -> list[tuple[float, float]]:
    """[(start, end)] covering [0, duration_s]: ceil(duration_s / seconds) windows, the last one short."""
    seconds = check_seconds(seconds)
    if not duration_s > 0:
        raise VtagError(f"cannot cut a video of {duration_s} s into segments")
    count = max(1, math.ceil(duration_s / seconds - 1e-9))
    return [(k * seconds, min((k + 1) * seconds, duration_s)) for k in range(count)]


def window_rows(times_s: np.ndarray, windows: list[tuple[float, float]], seconds: float) -> list[np.ndarray]:
    """The row indices falling in each window. A window no row falls in (a frame-rate gap) borrows
    the row nearest its middle, so every window gets a score."""
    times_s = np.asarray(times_s, np.float64)
    which = np.clip(np.floor(times_s / seconds + 1e-9).astype(np.int64), 0, len(windows) - 1)
    rows = []
    for k, (start, end) in enumerate(windows):
        inside = np.flatnonzero(which == k)
        if inside.size == 0:
            inside = np.array([int(np.argmin(np.abs(times_s - (start + end) / 2)))])
        rows.append(inside)
    return rows


def analysed_seconds(rows: int, duration_s: float | None) -> float:
    """The part of the video the rows describe: its duration, cut to the rows kept (max_frames)."""
    if rows == 0:
        raise VtagError("cannot cut a video with zero frames into segments")
    if duration_s is None or not math.isfinite(duration_s) or duration_s <= 0:
        return float(rows)
    return float(min(duration_s, rows))


def score_segments(tagger, rgb: np.ndarray, audio: np.ndarray, seconds: float = SEGMENT_SECONDS,
                   duration_s: float | None = None, times_s: np.ndarray | None = None,
                   top_k: int = 5) -> list[Segment]:
    """Float per-second rows rgb [T, 1024] and audio [T, 128] -> one scored Segment per window."""
    from vtag.io.records import pool_frames

    seconds = check_seconds(seconds)
    rgb, audio = np.asarray(rgb), np.asarray(audio)
    if rgb.ndim != 2 or audio.ndim != 2 or len(rgb) != len(audio):
        raise VtagError("segments need frame-level features (per-second rows); video-level records "
                        "hold one mean per video: extract frame-level records (`vtag extract --level frame`)")
    times_s = np.arange(len(rgb), dtype=np.float64) if times_s is None else np.asarray(times_s)[:len(rgb)]
    windows = segment_windows(analysed_seconds(len(rgb), duration_s), seconds)
    pooled = [pool_frames(rgb[rows], audio[rows], tagger.input_spec)
              for rows in window_rows(times_s, windows, seconds)]
    scores = tagger.scores(np.stack([v for v, _ in pooled]), np.stack([a for _, a in pooled]))
    return [Segment(start, end, tagger.top_labels(row, top_k), row) for (start, end), row in zip(windows, scores)]


def segments_of_features(tagger, features, seconds: float = SEGMENT_SECONDS, top_k: int = 5) -> list[Segment]:
    """Segments of an extracted video (`extract.VideoFeatures`)."""
    from vtag.features.pca import dequantize

    times = features.frame_times_s if features.has_video and features.frame_times_s is not None else None
    return score_segments(tagger, dequantize(features.rgb), dequantize(features.audio), seconds,
                          features.duration_s, times, top_k)


def add_segments(prediction, tagger, features, seconds: float | None, top_k: int):
    """The hook classify and batch call: fill `prediction.segments` when segments were asked for."""
    if seconds:
        prediction.segments = segments_of_features(tagger, features, seconds, top_k)
    return prediction

