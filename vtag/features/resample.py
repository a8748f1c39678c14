"""Band-limited resampling to VGGish's 16 kHz, the way AudioSet's reference frontend does it.

AudioSet's `vggish_input.waveform_to_examples` averages the channels and then calls
`resampy.resample(data, rate, 16000)` with resampy's default filter, `kaiser_best`. That filter is
a Kaiser-windowed sinc tabulated on a fine grid and read with linear interpolation between table
entries; its parameters (from resampy 0.4's `kaiser_best.npz` and its docstring):

- 50 zero crossings per wing, 2**13 table entries per zero crossing (409,601 entries in all);
- roll-off 0.9173473712608761 (the cut-off as a fraction of the lower Nyquist rate);
- Kaiser window beta 12.984585247040025 (fitted to the table: recomputing it with NumPy's
  symmetric `np.kaiser` reproduces every entry to within 1.2e-15).

When downsampling the table is scaled by the rate ratio and read with a stride of
`int(ratio * 2**13)`, so the filter's cut-off follows the output's Nyquist rate. Output sample `t`
sits at input time `t * rate_in / rate_out`; the left wing weighs the input samples at and before
it, the right wing those after it; samples outside the signal count as zero. There are
`int(n_in * rate_out / rate_in)` outputs.

resampy evaluates that per output sample in a numba loop. Here the same sums are grouped by phase:
with `g = gcd(rate_in, rate_out)` the fractional position repeats every `up = rate_out / g` outputs,
during which the input advances `down = rate_in / g` samples, so each phase's weights are computed
once and applied to the whole signal as one matrix product per group of phases (float64). The phase positions come
from exact integer arithmetic, so results differ from resampy's only by float rounding (its
`t * (rate_in / rate_out)` in doubles, and summation order): about 1e-15.
"""

from __future__ import annotations

import functools
import math

import numpy as np

ZERO_CROSSINGS = 50
TABLE_BITS = 13
ROLLOFF = 0.9173473712608761
KAISER_BETA = 12.984585247040025
# Phases computed by one convolution (its output channels).
_PHASES_PER_CONV = 64


@functools.lru_cache(maxsize=1)
def kaiser_best_table() -> np.ndarray:
    """The right wing of the windowed sinc, [ZERO_CROSSINGS * 2**TABLE_BITS + 1] float64."""
    steps = ZERO_CROSSINGS * 2 ** TABLE_BITS
    sinc = ROLLOFF * np.sinc(ROLLOFF * np.linspace(0.0, ZERO_CROSSINGS, num=steps + 1, endpoint=True))
    taper = np.kaiser(2 * steps + 1, KAISER_BETA)[steps:]
    table = taper * sinc
    table.setflags(write=False)
    return table


def output_length(n_in: int, rate_in: int, rate_out: int) -> int:
    """How many samples resampy returns for `n_in` input samples."""
    return int(n_in * float(rate_out) / float(rate_in))


def _wing(table: np.ndarray, delta: np.ndarray, frac: float, step: int) -> np.ndarray:
    """Weights of one wing for a fractional position `frac` (in units of the scaled table)."""
    position = frac * 2 ** TABLE_BITS
    offset = int(position)
    eta = position - offset
    taps = (len(table) - offset) // step
    index = offset + step * np.arange(taps)
    return table[index] + eta * delta[index]


@functools.lru_cache(maxsize=8)
def _phase_kernels(up: int, down: int, ratio: float) -> tuple[np.ndarray, np.ndarray, int]:
    """(kernels [up, width], starts [up], left): output `p + up*m` is
    `kernels[p] . xpad[starts[p] + down*m : ... + width]`, where xpad is the input preceded by
    `left` zeros. `up / down` is the rate ratio, not necessarily in lowest terms."""
    scale = min(1.0, ratio)
    table = kaiser_best_table()
    if ratio < 1:
        table = ratio * table
    delta = np.diff(table, append=table[-1])
    step = int(scale * 2 ** TABLE_BITS)
    lefts, rights, starts = [], [], []
    for p in range(up):
        n, rest = divmod(p * down, up)
        frac = scale * (rest / up)
        lefts.append(_wing(table, delta, frac, step))  # applies to x[n], x[n-1], ...
        rights.append(_wing(table, delta, scale - frac, step))  # applies to x[n+1], x[n+2], ...
        starts.append(n)
    left = max(len(w) for w in lefts) - 1  # zeros before x[0]
    width = left + 1 + max(len(w) for w in rights)
    kernels = np.zeros((up, width))
    for p, (lw, rw) in enumerate(zip(lefts, rights)):
        kernels[p, left - len(lw) + 1:left + 1] = lw[::-1]
        kernels[p, left + 1:left + 1 + len(rw)] = rw
    return kernels, np.asarray(starts), left


class Resampler:
    """Streaming `rate_in` -> `rate_out` resampler equal to resampy's `kaiser_best`.

    `push` takes mono float64 chunks in order and returns the output samples whose whole filter
    window has arrived (those are final); `finish` pads the end with zeros, as resampy does, and
    returns the rest, trimmed to resampy's output length. Memory stays at one filter width of input
    beyond what has been consumed."""

    def __init__(self, rate_in: int, rate_out: int) -> None:
        if rate_in <= 0 or rate_out <= 0:
            raise ValueError(f"sample rates must be positive, not {rate_in} -> {rate_out}")
        self.rate_in, self.rate_out = int(rate_in), int(rate_out)
        g = math.gcd(self.rate_in, self.rate_out)
        up, down = self.rate_out // g, self.rate_in // g
        # A convolution with one output channel per phase is a matrix product only when there are
        # enough phases: with few (48 kHz -> 16 kHz has one), take several periods as one block.
        periods = -(-_PHASES_PER_CONV // up)
        self.up, self.down = up * periods, down * periods
        kernels, starts, left = _phase_kernels(self.up, self.down, float(self.rate_out) / self.rate_in)
        width = kernels.shape[1]
        self._span = int(starts.max()) + width
        # Consecutive phases start close together: each group of them is one convolution whose
        # kernels sit at their offsets from the group's first start.
        self._groups = []
        for first in range(0, self.up, _PHASES_PER_CONV):
            s = starts[first:first + _PHASES_PER_CONV]
            bank = np.zeros((len(s), int(s.max() - s.min()) + width))
            for row, start in enumerate(s):
                bank[row, start - s.min():start - s.min() + width] = kernels[first + row]
            self._groups.append((int(s.min()), bank))
        self._buffer = np.zeros(left)  # padded input from the next block's first sample on
        self._pending: list[np.ndarray] = []
        self._pending_size = 0
        self._n_in = 0
        self._emitted = 0

    @property
    def samples_in(self) -> int:
        return self._n_in

    @property
    def samples_out(self) -> int:
        return self._emitted

    def push(self, samples: np.ndarray) -> np.ndarray:
        samples = np.asarray(samples, dtype=np.float64).reshape(-1)
        self._n_in += samples.size
        self._pending.append(samples)
        self._pending_size += samples.size
        # Work in chunks of about a second: a matrix product per decoded frame costs more in calls
        # than in arithmetic.
        if self._pending_size < self.rate_in:
            return np.zeros(0)
        return self._run()

    def finish(self) -> np.ndarray:
        total = output_length(self._n_in, self.rate_in, self.rate_out)
        self._gather()
        blocks = -(-(total - self._emitted) // self.up)
        need = (blocks - 1) * self.down + self._span
        if blocks > 0 and need > len(self._buffer):
            self._buffer = np.concatenate([self._buffer, np.zeros(need - len(self._buffer))])
        before = self._emitted
        out = self._run()[:max(0, total - before)]
        self._emitted = before + len(out)
        return out

    def _gather(self) -> None:
        if self._pending:
            self._buffer = np.concatenate([self._buffer] + self._pending)
            self._pending, self._pending_size = [], 0

    def _run(self) -> np.ndarray:
        self._gather()
        blocks = 0 if len(self._buffer) < self._span else (len(self._buffer) - self._span) // self.down + 1
        if blocks == 0:
            return np.zeros(0)
        step = self._buffer.strides[0]
        phases = []
        for start, bank in self._groups:
            # Row m of the view is the input window of block m for this group of phases.
            windows = np.lib.stride_tricks.as_strided(self._buffer[start:], (blocks, bank.shape[1]),
                                                      (self.down * step, step), writeable=False)
            phases.append(windows @ bank.T)  # [blocks, phases in the group]
        out = np.concatenate(phases, axis=1).reshape(-1)  # block-major: output p + up*m
        self._buffer = self._buffer[blocks * self.down:]
        self._emitted += out.size
        return out


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample mono audio like `resampy.resample(samples, rate_in, rate_out)` (float64 out)."""
    samples = np.asarray(samples, dtype=np.float64).reshape(-1)
    if rate_in == rate_out:
        return samples.copy()
    resampler = Resampler(rate_in, rate_out)
    return np.concatenate([resampler.push(samples), resampler.finish()])
