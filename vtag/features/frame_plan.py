"""Which frames YT8M's extractor keeps, decided from timestamps alone, and planned before decoding.

`FrameSelector` is OpenCV's `frame_iterator` loop turned inside out (see `vtag.features.media`): it
sees every frame's timestamp in presentation order and answers keep or drop. The demuxer knows every
timestamp before anything is decoded, so `plan_frames` runs the selector over the packets' timestamps
in a first pass; the decoding pass then only needs the kept frames and what they are predicted from.
`check_complete` tells a file cut short from one that simply ended.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import av

from vtag.errors import VtagError

YT8M_EVERY_MS = 1000.0
YT8M_MAX_FRAMES = 300


class FrameSelector:
    """OpenCV's frame_iterator as a streaming decision: call `keep(t_ms)` for every decoded frame in
    order with its timestamp (ms from the stream start); True means YT8M's extractor kept it."""

    def __init__(self, every_ms: float = YT8M_EVERY_MS, max_frames: int | None = YT8M_MAX_FRAMES) -> None:
        self.every_ms = every_ms
        self.max_frames = max_frames
        self.kept = 0
        self._last_ts = -99999.0
        self._keep_next = False
        self._after_read(0.0)  # CAP_PROP_POS_MSEC is 0 before the first read

    @property
    def done(self) -> bool:
        return self.max_frames is not None and self.kept >= self.max_frames

    def _after_read(self, position_ms: float) -> None:
        # The skip loop's test, done once per read: once the position reaches the mark, the mark
        # moves to this position and the next read is kept.
        if not self._keep_next and position_ms >= self._last_ts + self.every_ms:
            self._last_ts = position_ms
            self._keep_next = True

    def keep(self, t_ms: float) -> bool:
        if self.done:
            return False
        keep = self._keep_next
        if keep:
            self._keep_next = False
            self.kept += 1
        self._after_read(t_ms)
        return keep


def select_frames(timestamps_ms, every_ms: float = YT8M_EVERY_MS,
                  max_frames: int | None = YT8M_MAX_FRAMES) -> list[int]:
    """Indices of the frames YT8M's extractor keeps, given every frame's timestamp in decode order."""
    selector = FrameSelector(every_ms, max_frames)
    return [i for i, t in enumerate(timestamps_ms) if selector.keep(t)]


@dataclass(frozen=True)
class Plan:
    """Pass one's answer: the kept frames as (pts, index in presentation order, ms), and where the
    packets ended (ms) when they ran out before max_frames were kept (`complete` False)."""

    kept: list[tuple[int, int, float]]
    ended_ms: float
    complete: bool


class Unplannable(Exception):
    """Timestamps that cannot stand for the decoder's output order (missing, repeated, unordered)."""


def plan_frames(stream, every_ms: float, max_frames: int | None) -> Plan | None:
    """Demux (no decoding) the video packets and run the selector over their timestamps in
    presentation order; None when the timestamps cannot predict what the decoder gives back.

    Packets come in decode order; a packet's pts is never below its dts and dts only grows, so once
    a packet with dts D is read no later packet can show a frame before D: every pts below D is
    settled and goes through the selector in order. Reading stops as soon as the selector is done."""
    time_base = stream.time_base
    if time_base is None:
        return None
    start_pts = stream.start_time if stream.start_time is not None else 0
    seconds_per_tick = time_base.numerator / time_base.denominator
    selector = FrameSelector(every_ms, max_frames)
    pending: list[int] = []
    kept: list[tuple[int, int, float]] = []
    state = {"index": 0, "last": None}
    end_pts = None

    def settle(bound: int | None) -> bool:
        while pending and (bound is None or pending[0] < bound):
            pts = heapq.heappop(pending)
            if state["last"] is not None and pts <= state["last"]:
                raise Unplannable  # two frames with one timestamp: their order is the decoder's
            state["last"] = pts
            t_ms = (pts - start_pts) * seconds_per_tick * 1000.0  # as _frame_time_ms rounds it
            if selector.keep(t_ms):
                kept.append((pts, state["index"], t_ms))
            state["index"] += 1
            if selector.done:
                return True
        return False

    try:
        for packet in stream.container.demux(stream):
            if packet.size == 0 or packet.is_discard:
                continue  # the flush packet at the end; frames an edit list cuts (never output)
            if packet.pts is None:
                return None
            if packet.dts is not None and settle(packet.dts):
                return Plan(kept, kept[-1][2], True)
            heapq.heappush(pending, packet.pts)
            end = packet.pts + (packet.duration or 0)
            end_pts = end if end_pts is None else max(end_pts, end)
        done = settle(None)
    except Unplannable:
        return None
    ended_ms = (end_pts - start_pts) * seconds_per_tick * 1000.0 if end_pts is not None else 0.0
    return Plan(kept, ended_ms, done)


def _declared_ms(stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base) * 1000.0
    container = stream.container
    if container.duration:
        return container.duration / av.time_base * 1000.0
    return None


def check_complete(path, stream, ended_ms: float, complete: bool) -> None:
    """A video whose packets stop well before the duration its header declares was cut off (a
    download or copy that stopped): features from the part before the cut would pass for the video."""
    if complete:
        return
    declared = _declared_ms(stream)
    if declared is None:
        return
    if ended_ms + max(1000.0, 0.05 * declared) < declared:
        raise VtagError(f"{path}: truncated or corrupt at {ended_ms / 1000.0:.1f} s of {declared / 1000.0:.1f} s "
                        "(the rest of the video track is missing); re-download or re-encode the file")
