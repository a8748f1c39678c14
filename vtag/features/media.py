"""Decoding with PyAV: YT8M's frame sampling and 16 kHz mono audio (AudioSet's downmix and resampler).

Frame sampling reproduces Google's `extract_tfrecords_main.frame_iterator`, which drove OpenCV:

    last_ts = -99999
    while kept < max_frames:
        while cap.get(CAP_PROP_POS_MSEC) < last_ts + every_ms:
            read()                      # dropped
        last_ts = cap.get(CAP_PROP_POS_MSEC)
        keep(read())

OpenCV's FFmpeg backend answers CAP_PROP_POS_MSEC with the timestamp of the frame it decoded *last*
(`(picture_pts - stream.start_time) * time_base * 1000`), and 0 before the first read. So the first
frame is kept; then frames are read and dropped until one whose own timestamp reaches
`last_ts + every_ms`; the frame after that one is kept, and `last_ts` is the dropped frame's time.
At 25 fps that keeps frames 0, 26, 51, 76, ... (frame 25 at 1000 ms is dropped, 26 kept; frame 50
at 2000 ms dropped, 51 kept). `FrameSelector` (vtag.features.frame_plan) is that loop turned inside
out. Since it needs timestamps only, the packets' timestamps choose the frames before decoding; the
decoder then skips the non-reference frames that are not kept, and only kept frames are converted
to RGB (a plain loop decodes and converts all of them).

Timestamps come from pts × time_base, never from frame counts, so variable-frame-rate files sample
the same way OpenCV would. Frames are rotated upright from the display matrix.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import av
import numpy as np

from vtag.features.audio_mix import MonoResampler
from vtag.features.frame_plan import (YT8M_EVERY_MS, YT8M_MAX_FRAMES, FrameSelector, Plan, check_complete,
                                      plan_frames, select_frames)  # noqa: F401 (select_frames: re-exported)
from vtag.errors import VtagError
from vtag.features.still import is_still_image, read_image

AUDIO_RATE = 16000


@dataclass(frozen=True)
class MediaInfo:
    """What a file holds, from its headers (and one decoded frame, for the rotation)."""

    path: Path
    has_video: bool
    has_audio: bool
    duration_s: float | None
    width: int | None = None  # as displayed, i.e. after rotation
    height: int | None = None
    fps: float | None = None  # average rate from the container; VFR files have no single rate
    rotation: int = 0  # degrees counter-clockwise, as in the display matrix
    video_codec: str | None = None
    audio_codec: str | None = None
    audio_rate: int | None = None
    audio_channels: int | None = None

    @property
    def lacks(self) -> str | None:
        """'audio' / 'video' for a file missing one of them, else None."""
        if not self.has_audio:
            return "audio"
        if not self.has_video:
            return "video"
        return None


@dataclass(frozen=True)
class SampledFrame:
    """A kept frame: its position in decode order, its timestamp and its upright RGB pixels."""

    index: int
    time_s: float
    rgb: np.ndarray  # uint8 [H, W, 3]


def _summarise(exc: BaseException) -> str:
    """One line from a PyAV/FFmpeg error, without the file name PyAV appends (we name it ourselves)."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


def _open(path: str | Path) -> av.container.InputContainer:
    from vtag.io.remote import is_url

    if is_url(path):
        return _open_url(path)
    path = Path(path)
    if not path.exists():
        raise VtagError(f"{path}: no such file")
    if path.is_dir():
        raise VtagError(f"{path}: is a directory, not a media file")
    if path.stat().st_size == 0:
        raise VtagError(f"{path}: empty file (0 bytes), not a video or audio file")
    try:
        container = av.open(str(path), "r")
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise VtagError(f"{path}: cannot read as media ({_summarise(exc)}); is it a video or audio file?") from None
    if not container.streams.video and not container.streams.audio:
        container.close()
        raise VtagError(f"{path}: has neither a video nor an audio track")
    return container


def _is_url(path) -> bool:
    from vtag.io.remote import is_url

    return is_url(path)


def _open_url(url: str) -> av.container.InputContainer:
    """A URL through fsspec as a seekable file object: FFmpeg reads (ranges of) it as it decodes;
    the container holds the file object, which goes when the container does."""
    from vtag.io import remote

    if remote.size(url) == 0:
        raise VtagError(f"{url}: empty file (0 bytes), not a video or audio file")
    try:
        container = av.open(remote.open_url(url), "r")
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise VtagError(f"{url}: cannot read as media ({_summarise(exc)}); is it a video or audio file?") from None
    if not container.streams.video and not container.streams.audio:
        container.close()
        raise VtagError(f"{url}: has neither a video nor an audio track")
    return container


def _decode_error(path: str | Path, exc: BaseException, where: str) -> VtagError:
    return VtagError(f"{path}: corrupt or unreadable {where} ({_summarise(exc)})")


def probe(path: str | Path) -> MediaInfo:
    """Read a file's headers: which tracks it has, its duration, display size, rate and rotation."""
    container = _open(path)
    try:
        duration = container.duration / av.time_base if container.duration else None
        info = {"path": path if _is_url(path) else Path(path), "has_video": bool(container.streams.video),
                "has_audio": bool(container.streams.audio), "duration_s": duration}
        if container.streams.video:
            vs = container.streams.video[0]
            rotation = _stream_rotation(vs)
            width, height = vs.codec_context.width, vs.codec_context.height
            if rotation % 180:
                width, height = height, width
            rate = vs.average_rate or vs.guessed_rate
            info.update(width=width, height=height, fps=float(rate) if rate else None, rotation=rotation,
                        video_codec=vs.codec_context.name)
            if duration is None and vs.duration is not None:
                info["duration_s"] = float(vs.duration * vs.time_base)
        if container.streams.audio:
            aus = container.streams.audio[0]
            info.update(audio_codec=aus.codec_context.name, audio_rate=aus.codec_context.sample_rate,
                        audio_channels=aus.codec_context.channels)
        return MediaInfo(**info)
    finally:
        container.close()


def _stream_rotation(stream) -> int:
    """Rotation from the first decoded frame's display matrix (FFmpeg copies the stream's matrix onto
    every frame); 0 when the file has none or the frame cannot be decoded here."""
    try:
        for frame in stream.container.decode(stream):
            return _normalise_rotation(frame.rotation)
    except av.FFmpegError:
        pass
    return 0


def _normalise_rotation(degrees: float | int | None) -> int:
    if not degrees:
        return 0
    return int(round(degrees / 90.0)) * 90 % 360


def apply_rotation(rgb: np.ndarray, degrees: int) -> np.ndarray:
    """Turn a decoded frame upright. `degrees` is the display matrix's counter-clockwise rotation
    (PyAV's `VideoFrame.rotation`); the frame is shown rotated that way, so rotate it likewise.
    Anything not a multiple of 90 is rounded to the nearest one (FFmpeg's autorotate does the same)."""
    turns = _normalise_rotation(degrees) // 90
    if turns == 0:
        return rgb
    return np.ascontiguousarray(np.rot90(rgb, k=turns))


def sample_frames(path: str | Path, *, every_ms: float = YT8M_EVERY_MS,
                  max_frames: int | None = YT8M_MAX_FRAMES, threads: bool = True) -> Iterator[np.ndarray]:
    """Yield the frames YT8M's extractor would keep as upright uint8 RGB arrays [H, W, 3]
    (`sample_frames_timed` also gives each one's index and timestamp)."""
    for frame in sample_frames_timed(path, every_ms=every_ms, max_frames=max_frames, threads=threads):
        yield frame.rgb


def sample_frames_timed(path: str | Path, *, every_ms: float = YT8M_EVERY_MS,
                        max_frames: int | None = YT8M_MAX_FRAMES, threads: bool = True,
                        decode_all: bool = False,
                        on_plan: Callable[[int], None] | None = None) -> Iterator[SampledFrame]:
    """Yield the frames YT8M's extractor would keep, upright, as RGB, one at a time.

    Streams: nothing but the current frame is held, so memory does not grow with the video. The
    choice of frames depends only on timestamps, which the demuxer knows before anything is
    decoded: a first pass reads the packets' timestamps (no decoding), then the decoder is told to
    skip every non-reference frame that is not kept (`skip_frame`), so only the kept frames and the
    frames they are predicted from are decoded, and only the kept ones converted to RGB. The kept
    frames are bit for bit those of decoding everything (`decode_all=True`, the plain loop, which is
    also what URLs and files whose timestamps cannot predict the decoder's order get). When the
    frames are planned, `on_plan(count)` hears how many will come before any is decoded. Raises
    VtagError naming the file when it has no video track, cannot be decoded, or ends (truncated)
    well before the duration its header declares."""
    container = _open(path)
    try:
        if not container.streams.video:
            raise VtagError(f"{path}: has no video track")
        if is_still_image(container):
            yield SampledFrame(index=0, time_s=0.0, rgb=read_image(path))
            return
        plan = None
        if not decode_all and not _is_url(path):
            # A second demux pass over a URL would fetch it twice: there the plain loop is cheaper.
            try:
                plan = plan_frames(container.streams.video[0], every_ms, max_frames)
            except av.FFmpegError:
                plan = None  # the decoding pass below names the error
            if plan is not None:
                check_complete(path, container.streams.video[0], plan.ended_ms, plan.complete)
            container.close()
            container = _open(path)
        stream = container.streams.video[0]
        if threads:
            _set_threads(stream)
        if plan is not None and on_plan is not None:
            on_plan(len(plan.kept))
        if plan is None:
            yield from _decode_every_frame(path, container, stream, every_ms, max_frames)
            return
        yielded = 0
        try:
            for frame in _decode_planned(path, container, stream, plan):
                yield frame
                yielded += 1
        except _Mismatch:
            # The decoder did not give back what the timestamps promised (frames it drops): do it
            # the plain way, without repeating the frames already given.
            container.close()
            container = _open(path)
            stream = container.streams.video[0]
            if threads:
                _set_threads(stream)
            for i, frame in enumerate(_decode_every_frame(path, container, stream, every_ms, max_frames)):
                if i >= yielded:
                    yield frame
    finally:
        container.close()


# Bytes of decoded frames the decoder's threads may hold between them. Each frame thread keeps a
# frame in flight (an FFmpeg default of cores + 1 threads): at 16000x16000 that is 384 MB a thread,
# so the thread count follows the frame size, not the core count.
FRAME_THREADS_BUDGET = 128 * 2**20


def decode_threads(width: int, height: int, cores: int | None = None) -> int:
    """Frame threads for a video of this size: FFmpeg's cores + 1, fewer when their frames would pass
    FRAME_THREADS_BUDGET (1 means no frame threads)."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    frame_bytes = max(1, width * height * 3 // 2)  # yuv420p
    return max(1, min(cores + 1, 16, FRAME_THREADS_BUDGET // frame_bytes))


def _set_threads(stream) -> None:
    codec = stream.codec_context
    threads = decode_threads(codec.width or 0, codec.height or 0)
    if threads > 1:
        codec.thread_count = threads
        stream.thread_type = "AUTO"  # frame + slice threads: the decode is the other half of the work
    else:
        codec.thread_count = 0
        stream.thread_type = "SLICE"  # threads inside one frame only: no frames held in flight


def _frame_time_ms(frame, start_pts: int, time_base, index: int, fps: float | None, previous_ms: float) -> float:
    pts = frame.pts if frame.pts is not None else frame.dts
    if pts is not None and time_base is not None:
        # Same arithmetic as OpenCV: (pts - start_time) * r2d(time_base) * 1000, in doubles.
        return (pts - start_pts) * (time_base.numerator / time_base.denominator) * 1000.0
    # No timestamp at all (rare raw streams): assume a constant rate from the last frame.
    return previous_ms + (1000.0 / fps if fps else 40.0) if index else 0.0


def _decode_every_frame(path, container, stream, every_ms, max_frames) -> Iterator[SampledFrame]:
    """The plain loop: decode every frame, ask the selector about each, convert the kept ones."""
    time_base = stream.time_base
    start_pts = stream.start_time if stream.start_time is not None else 0
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else None
    selector = FrameSelector(every_ms, max_frames)
    t_ms = 0.0
    index = 0
    try:
        for frame in container.decode(stream):
            t_ms = _frame_time_ms(frame, start_pts, time_base, index, fps, t_ms)
            if selector.keep(t_ms):
                yield SampledFrame(index=index, time_s=t_ms / 1000.0, rgb=_upright_rgb(frame))
                if selector.done:
                    return
            index += 1
    except av.FFmpegError as exc:
        raise _decode_error(path, exc, f"video near {t_ms / 1000.0:.1f} s") from None
    if index:
        check_complete(path, stream, t_ms + (1000.0 / fps if fps else 0.0), False)


def _upright_rgb(frame) -> np.ndarray:
    return apply_rotation(frame.to_ndarray(format="rgb24"), frame.rotation)


class _Mismatch(Exception):
    """The decoder's frames were not those the packets' timestamps predicted."""


def _decode_planned(path, container, stream, plan: Plan) -> Iterator[SampledFrame]:
    """Decode only the kept frames and what they reference: every packet that is not a kept frame
    is sent with skip_frame NONREF (FFmpeg then skips it if nothing is predicted from it)."""
    if not plan.kept:
        return
    wanted = {pts for pts, _, _ in plan.kept}
    todo = iter(plan.kept)
    next_pts, next_index, next_ms = next(todo)
    codec = stream.codec_context
    mode = None
    try:
        for packet in container.demux(stream):
            # Frame threads copy the setting when the packet is sent, so it applies per packet.
            want = "DEFAULT" if packet.pts in wanted or packet.size == 0 else "NONREF"
            if want != mode:
                codec.skip_frame = mode = want
            for frame in codec.decode(packet):
                if frame.pts != next_pts:
                    if frame.pts is None or frame.pts > next_pts or frame.pts in wanted:
                        raise _Mismatch
                    continue  # a reference frame decoded for the kept ones
                yield SampledFrame(index=next_index, time_s=next_ms / 1000.0, rgb=_upright_rgb(frame))
                following = next(todo, None)
                if following is None:
                    return
                next_pts, next_index, next_ms = following
    except av.FFmpegError as exc:
        raise _decode_error(path, exc, f"video near {next_ms / 1000.0:.1f} s") from None
    raise _Mismatch  # packets ran out before every kept frame came back


def read_audio(path: str | Path, *, rate: int = AUDIO_RATE, max_seconds: float | None = None,
               align_to_video: bool = True) -> np.ndarray:
    """The first audio track as mono float64 at `rate` Hz, at most `max_seconds` long, made the way
    AudioSet's `vggish_input` makes it: decoded at the source rate with every channel, averaged
    to mono in float64 (`np.mean` over channels; no downmix matrix), then resampled with resampy's
    `kaiser_best` filter (`vtag.features.resample`). Source audio at `rate` is not resampled, so it gives
    exactly the reference's samples for any channel count.

    With `align_to_video`, sample 0 is the video stream's start (the time frame sampling counts
    from), so audio second t pairs with visual second t: audio that starts late is preceded by
    silence and audio before the video's start is dropped. Only as much is decoded as
    `max_seconds` needs (plus the filter's reach). Raises VtagError when the file has no audio
    track or the audio cannot be decoded."""
    container = _open(path)
    limit = None if max_seconds is None else int(math.ceil(max_seconds * rate))
    try:
        if not container.streams.audio:
            raise VtagError(f"{path}: has no audio track")
        stream = container.streams.audio[0]
        stream.thread_type = "AUTO"
        origin_s = None
        if align_to_video and container.streams.video:
            vs = container.streams.video[0]
            origin_s = float((vs.start_time or 0) * vs.time_base) if vs.time_base else 0.0
        mono = MonoResampler(rate)
        lead = None  # samples of silence to prepend (>0) or to drop (<0)
        try:
            for frame in container.decode(stream):
                if lead is None:
                    first_s = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else 0.0
                    lead = round((first_s - origin_s) * rate) if origin_s is not None else 0
                    if lead > 0:
                        mono.pad(lead)
                mono.push(frame)
                if limit is not None and mono.final_samples >= limit - min(lead or 0, 0):
                    break
            else:
                mono.finish()
        except av.FFmpegError as exc:
            raise _decode_error(path, exc, "audio") from None
    finally:
        container.close()
    wave = mono.samples()
    if lead is not None and lead < 0:
        wave = wave[-lead:]
    return wave[:limit] if limit is not None else wave
