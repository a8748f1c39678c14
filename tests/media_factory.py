"""Generate small media files with PyAV for tests and benchmarks.

Every video frame carries its own index as a row of black/white blocks (`frame_index_of` reads it
back), so a test can tell exactly which frames a sampler kept even after lossy compression. Audio is
a sine tone per channel. Odd cases are options: odd sizes, variable frame rate (explicit frame
times), rotation metadata, video-only or audio-only, any container/codec pair FFmpeg can write;
`make_broken` writes unreadable files of several kinds.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import numpy as np

INDEX_BITS = 12  # 4,096 frames: more than any test clip needs; bits are drawn as blocks across the top

# Codecs FFmpeg can write into each container without extra flags.
DEFAULT_VIDEO_CODEC = {".mp4": "libx264", ".mkv": "libx264", ".mov": "libx264", ".webm": "libvpx-vp9", ".avi": "mpeg4"}
DEFAULT_AUDIO_CODEC = {".mp4": "aac", ".mkv": "aac", ".mov": "aac", ".webm": "libopus", ".avi": "pcm_s16le",
                       ".m4a": "aac", ".mp3": "libmp3lame", ".ogg": "libopus", ".flac": "flac", ".wav": "pcm_s16le"}


def index_pattern(index: int, width: int, height: int) -> np.ndarray:
    """An RGB frame whose top band encodes `index` in binary, MSB first; the rest is a gradient that
    moves with the index so the encoder has real motion to code."""
    frame = np.empty((height, width, 3), np.uint8)
    ys = np.arange(height, dtype=np.int32)[:, None]
    xs = np.arange(width, dtype=np.int32)[None, :]
    frame[..., 0] = (xs * 3 + index * 5) % 256
    frame[..., 1] = (ys * 3 + index * 2) % 256
    frame[..., 2] = ((xs + ys) + index * 7) % 256
    band = max(4, height // 4)
    for bit in range(INDEX_BITS):
        x0, x1 = bit * width // INDEX_BITS, (bit + 1) * width // INDEX_BITS
        frame[:band, x0:x1] = 255 if (index >> (INDEX_BITS - 1 - bit)) & 1 else 0
    return frame


def frame_index_of(rgb: np.ndarray) -> int:
    """Read back the index drawn by `index_pattern` (from an upright frame)."""
    height, width = rgb.shape[:2]
    band = max(4, height // 4)
    index = 0
    for bit in range(INDEX_BITS):
        x0, x1 = bit * width // INDEX_BITS, (bit + 1) * width // INDEX_BITS
        # Sample the block's centre: block edges blur under chroma subsampling and compression.
        cx0, cx1 = x0 + (x1 - x0) // 4, x1 - (x1 - x0) // 4
        value = rgb[band // 4: band - band // 4, cx0:max(cx1, cx0 + 1)].mean()
        index = (index << 1) | int(value > 127)
    return index


def make_media(
    path: str | Path,
    *,
    duration_s: float = 2.0,
    size: tuple[int, int] | None = (96, 64),
    fps: float = 25,
    frame_times: Sequence[float] | None = None,
    audio: bool = True,
    audio_rate: int = 48000,
    audio_channels: int = 2,
    audio_codec: str | None = None,
    video_codec: str | None = None,
    rotation: int = 0,
    tone_hz: float = 440.0,
    audio_offset_s: float = 0.0,
    crf: int | None = None,
    video_options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Write a test clip. `size=None` makes an audio-only file; `audio=False` a video-only one.
    `frame_times` (seconds, increasing) gives a variable-frame-rate clip and overrides fps/duration
    for the video track. `rotation` (degrees counter-clockwise, multiple of 90) is written as a
    display matrix (mp4/mov). `audio_offset_s` starts the audio track that much after the video
    (timestamps, not silence: use mkv, whose timestamps are kept as written). `video_options` go to
    the encoder over the defaults (e.g. {"x264-params": "bframes=3:open-gop=1"}: the ultrafast preset
    alone writes no B-frames); `container_options` to the muxer (e.g. {"movflags": "faststart"}: the
    mp4 index first, as web videos have it). Returns the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    if size is None and not audio:
        raise ValueError("a clip needs video or audio")
    container = av.open(str(path), "w", options=container_options or {})
    try:
        vstream = astream = None
        if size is not None:
            width, height = size
            codec = video_codec or DEFAULT_VIDEO_CODEC.get(suffix, "libx264")
            rate = Fraction(fps).limit_denominator(1001) if frame_times is None else None
            vstream = container.add_stream(codec, rate=rate)
            vstream.width, vstream.height = width, height
            odd = width % 2 or height % 2
            # yuv420p needs even sizes; 4:4:4 lets H.264 carry odd ones.
            if odd and codec == "libx264":
                vstream.pix_fmt = "yuv444p"
            else:
                vstream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
            if codec == "libx264":
                vstream.options = {"preset": "ultrafast", "crf": str(crf if crf is not None else 18)}
            if video_options:
                vstream.options = {**vstream.options, **video_options}
            if frame_times is not None:
                vstream.codec_context.time_base = Fraction(1, 1000)
                vstream.time_base = Fraction(1, 1000)
            if rotation:
                vstream.set_display_rotation(rotation)
        if audio:
            codec = audio_codec or DEFAULT_AUDIO_CODEC.get(suffix, "aac")
            astream = container.add_stream(codec, rate=audio_rate)
            astream.layout = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}.get(audio_channels, f"{audio_channels}c")

        tone = None
        if astream is not None:
            tone = _ToneWriter(container, astream, duration_s, audio_rate, audio_channels, tone_hz, audio_offset_s)
        if vstream is not None:
            times = list(frame_times) if frame_times is not None else [i / fps for i in range(round(duration_s * fps))]
            for i, t in enumerate(times):
                if tone is not None:
                    tone.write_until(t)  # interleave, as a real file would be
                frame = av.VideoFrame.from_ndarray(index_pattern(i, *size), format="rgb24")
                if frame_times is not None:
                    frame.pts = round(t * 1000)
                    frame.time_base = Fraction(1, 1000)
                for packet in vstream.encode(frame):
                    container.mux(packet)
            for packet in vstream.encode():
                container.mux(packet)
        if tone is not None:
            tone.write_until(None)
    finally:
        container.close()
    return path


class _ToneWriter:
    """Writes the sine tone in chunks, so the audio can be interleaved with the video frames."""

    def __init__(self, container, stream, duration_s: float, rate: int, channels: int, tone_hz: float,
                 offset_s: float = 0.0) -> None:
        self.container, self.stream = container, stream
        self.offset = round(offset_s * rate)
        self.rate, self.channels, self.tone_hz = rate, channels, tone_hz
        self.total = round(duration_s * rate)
        self.written = 0

    def write_until(self, t: float | None) -> None:
        end = self.total if t is None else min(self.total, max(0, round(t * self.rate) - self.offset))
        while self.written < end:
            n = min(1024, end - self.written)
            ts = np.arange(self.written, self.written + n) / self.rate
            # Each channel gets its own amplitude so a downmix is distinguishable from one channel.
            planes = np.stack([0.5 / (c + 1) * np.sin(2 * np.pi * self.tone_hz * ts)
                               for c in range(self.channels)]).astype(np.float32)
            # Plane by plane: PyAV's from_ndarray trips over 8-channel planar frames.
            frame = av.AudioFrame(format="fltp", layout=self.stream.layout.name, samples=n)
            for c in range(self.channels):
                np.frombuffer(frame.planes[c], dtype=np.float32, count=n)[:] = planes[c]
            frame.sample_rate = self.rate
            frame.pts = self.written + self.offset
            frame.time_base = Fraction(1, self.rate)
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
            self.written += n
        if t is None:
            for packet in self.stream.encode():
                self.container.mux(packet)


def make_broken(path: str | Path, kind: str, source: str | Path | None = None) -> Path:
    """Unreadable inputs: 'empty' (zero bytes), 'text' (not media at all), 'garbage' (random bytes
    with a video suffix), 'truncated' (the first 2 KB of `source`, header but almost no data),
    'headless' (`source` with its first 4 KB overwritten), 'cut' (the first 60% of `source`: a
    download that stopped), 'scrambled' (`source` with every byte after the first 10% randomised: the
    container parses, the streams do not decode)."""
    path = Path(path)
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a video\n" * 20)
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    elif kind in ("truncated", "headless", "cut", "scrambled"):
        if source is None:
            raise ValueError(f"{kind!r} needs a source file")
        data = Path(source).read_bytes()
        if kind == "truncated":
            data = data[:2048]
        elif kind == "headless":
            data = b"\0" * 4096 + data[4096:]
        elif kind == "cut":
            data = data[: len(data) * 6 // 10]
        else:
            keep = len(data) // 10
            noise = np.random.default_rng(1).integers(0, 256, len(data) - keep, dtype=np.uint8).tobytes()
            data = data[:keep] + noise
        path.write_bytes(data)
    else:
        raise ValueError(f"unknown broken kind {kind!r}")
    return path
