"""Decoded audio frames -> mono float64 at 16 kHz, as AudioSet's `vggish_input` does it.

That reference reads the samples as they are stored (all channels, at the source rate), scales
integers to [-1, 1) (int16 / 32768), averages the channels with `np.mean(data, axis=1)` and only
then resamples (resampy, `kaiser_best`). FFmpeg's own downmix is not an average (stereo becomes
0.7071 (L + R); 5.1 weighs the centre 1, the fronts 0.7071, the surrounds 0.5 and drops the LFE),
so it is not used: frames are read in their own sample format and layout here.
"""

from __future__ import annotations

import numpy as np

from vtag.features.resample import Resampler

# Integer sample formats -> (offset, scale) mapping them to [-1, 1), as FFmpeg's and NumPy's
# int -> float conversions do (x / 2**(bits-1); unsigned 8-bit is centred on 128).
_INTEGER_SCALE = {"u8": (128.0, 1 / 128.0), "s16": (0.0, 1 / 32768.0), "s32": (0.0, 1 / 2.0 ** 31),
                  "s64": (0.0, 1 / 2.0 ** 63)}


_DTYPES = {"u8": np.uint8, "s16": np.int16, "s32": np.int32, "s64": np.int64, "flt": np.float32, "dbl": np.float64}


def _frame_samples(frame) -> tuple[str, list[np.ndarray]]:
    """(sample format without the planar 'p', one array per plane) straight from the frame's
    buffers. PyAV 18's `to_ndarray` walks one plane too many on 8-channel planar frames (7.1 AAC,
    Opus) and crashes; plane buffers may also be padded past the last sample."""
    channels = len(frame.layout.channels)
    name = frame.format.name.rstrip("p")
    dtype = _DTYPES[name]
    if frame.format.is_planar:
        return name, [np.frombuffer(frame.planes[c], dtype=dtype, count=frame.samples) for c in range(channels)]
    return name, [np.frombuffer(frame.planes[0], dtype=dtype, count=frame.samples * channels)]


def _to_float(name: str, data: np.ndarray) -> np.ndarray:
    if name in _INTEGER_SCALE:
        offset, scale = _INTEGER_SCALE[name]
        data = data.astype(np.float64)
        if offset:
            data -= offset
        data *= scale
        return data
    return data.astype(np.float64)


def _interleave(planar: bool, channels: int, planes: list[list[np.ndarray]]) -> np.ndarray:
    """Per-plane lists of chunks -> [samples, channels], C-contiguous (the layout of
    `wavfile.read`, so the channel mean sums in the same order as the reference)."""
    if planar:
        return np.stack([np.concatenate(chunks) for chunks in planes], axis=1)
    return np.concatenate(planes[0]).reshape(-1, channels)


def frame_channels(frame) -> np.ndarray:
    """One PyAV AudioFrame -> float64 [samples, channels], integers scaled to [-1, 1)."""
    name, planes = _frame_samples(frame)
    data = _interleave(frame.format.is_planar, len(frame.layout.channels), [[p] for p in planes])
    return np.ascontiguousarray(_to_float(name, data))


def mix_to_mono(channels: np.ndarray) -> np.ndarray:
    """[samples, channels] -> [samples]: the plain mean, in float64."""
    if channels.shape[1] == 1:
        return channels[:, 0].copy()
    if channels.shape[1] == 2:
        # np.mean's sum of two is one addition either way round, then the same division; this
        # skips NumPy's slow reduction along a 2-long axis (stereo is most files).
        return (channels[:, 0] + channels[:, 1]) / 2
    return np.mean(channels, axis=1)


class MonoResampler:
    """Collects decoded frames as mono float64 at `rate` Hz. Frames are converted about a second at
    a time (per-frame NumPy calls would cost more than the arithmetic); frames at another rate go
    through `vtag.features.resample.Resampler`; a stream that changes rate, layout or sample format part-way
    is handled from that frame on."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._chunks: list[np.ndarray] = []
        self._final = 0
        self._resampler: Resampler | None = None
        self._source_rate: int | None = None
        self._kind: tuple | None = None  # (format name, planar, channels) of the pending frames
        self._pending: list[list[np.ndarray]] = []
        self._pending_samples = 0

    @property
    def final_samples(self) -> int:
        """Output samples so far that no later input can change."""
        return self._final

    def _add(self, samples: np.ndarray) -> None:
        if samples.size:
            self._chunks.append(samples)
            self._final += samples.size

    def pad(self, count: int) -> None:
        self._add(np.zeros(count))

    def push(self, frame) -> None:
        source_rate = int(frame.sample_rate)
        name, planes = _frame_samples(frame)
        kind = (name, frame.format.is_planar, len(frame.layout.channels))
        if kind != self._kind or source_rate != self._source_rate:
            self._convert()
            self._kind = kind
            self._pending = [[] for _ in planes]
        if source_rate != self._source_rate:
            self._end_resampler()
            self._source_rate = source_rate
            self._resampler = Resampler(source_rate, self.rate) if source_rate != self.rate else None
        for chunks, plane in zip(self._pending, planes):
            chunks.append(plane)
        self._pending_samples += frame.samples
        if self._pending_samples >= source_rate:
            self._convert()

    def _convert(self) -> None:
        if not self._pending_samples:
            return
        name, planar, channels = self._kind
        mono = mix_to_mono(np.ascontiguousarray(_to_float(name, _interleave(planar, channels, self._pending))))
        self._pending = [[] for _ in self._pending]
        self._pending_samples = 0
        self._add(self._resampler.push(mono) if self._resampler is not None else mono)

    def _end_resampler(self) -> None:
        if self._resampler is not None:
            self._add(self._resampler.finish())
            self._resampler = None

    def finish(self) -> None:
        """End of the stream: the last frames, and the resampler's tail (input padded with zeros)."""
        self._convert()
        self._end_resampler()

    def samples(self) -> np.ndarray:
        self._convert()
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0)
