"""Decoded audio frames -> mono float64 at 16 kHz, as AudioSet's `vggish_input` does it.

That reference reads the samples as they are stored (all channels, at the source rate), scales
integers to [-1, 1) (int16 / 32768), averages the channels with `np.mean(data, axis=1)` and only
then resamples (resampy, `kaiser_best`). FFmpeg's own downmix is not an average (stereo becomes
0.7071 (L + R); 5.1 weighs the centre 1, the fronts 0.7071, the surrounds 0.5 and drops the LFE),
so it is not used: frames are read in their own sample format and layout here.
"""

from __future__ import annotations

import numpy as np

from vtag.resample import Resampler

# Integer sample formats -> (offset, scale) mapping them to [-1, 1), as FFmpeg's and NumPy's
# int -> float conversions do (x / 2**(bits-1); unsigned 8-bit is centred on 128).
_INTEGER_SCALE = {"u8": (128.0, 1 / 128.0), "s16": (0.0, 1 / 32768.0), "s32": (0.0, 1 / 2.0 ** 31),
                  "s64": (0.0, 1 / 2.0 ** 63)}


_DTYPES = {"u8": np.uint8, "s16": np.int16, "s32": np.int32, "s64": np.int64, "flt": np.float32, "dbl": np.float64}


def frame_channels(frame) -> np.ndarray:
    """One PyAV AudioFrame -> float64 [samples, channels], C-contiguous (the layout of
    `wavfile.read`, so the channel mean sums in the same order as the reference)."""
    channels = len(frame.layout.channels)
    name = frame.format.name.rstrip("p")
    dtype = _DTYPES[name]
    count = frame.samples
    # Plane buffers are read directly: PyAV 18's `to_ndarray` walks one plane too many on 8-channel
    # planar frames (7.1 AAC, Opus) and crashes. Buffers may be padded past the last sample.
    if frame.format.is_planar:
        data = np.stack([np.frombuffer(frame.planes[c], dtype=dtype, count=count) for c in range(channels)], axis=1)
    else:
        data = np.frombuffer(frame.planes[0], dtype=dtype, count=count * channels).reshape(count, channels)
    if name in _INTEGER_SCALE:
        offset, scale = _INTEGER_SCALE[name]
        data = data.astype(np.float64)
        if offset:
            data -= offset
        data *= scale
        return np.ascontiguousarray(data)
    return np.ascontiguousarray(data, dtype=np.float64)


def mix_to_mono(channels: np.ndarray) -> np.ndarray:
    """[samples, channels] -> [samples]: the plain mean, in float64."""
    if channels.shape[1] == 1:
        return channels[:, 0].copy()
    return np.mean(channels, axis=1)


class MonoResampler:
    """Collects decoded frames as mono float64 at `rate` Hz. Frames at another rate go through
    `vtag.resample.Resampler`; a stream that changes rate part-way gets a new resampler from there."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._chunks: list[np.ndarray] = []
        self._final = 0
        self._resampler: Resampler | None = None
        self._source_rate: int | None = None

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
        mono = mix_to_mono(frame_channels(frame))
        source_rate = int(frame.sample_rate)
        if source_rate != self._source_rate:
            self.finish()
            self._source_rate = source_rate
            self._resampler = Resampler(source_rate, self.rate) if source_rate != self.rate else None
        self._add(self._resampler.push(mono) if self._resampler is not None else mono)

    def finish(self) -> None:
        """End of the stream: the resampler's last samples (the input padded with zeros)."""
        if self._resampler is not None:
            self._add(self._resampler.finish())
            self._resampler = None

    def samples(self) -> np.ndarray:
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0)
