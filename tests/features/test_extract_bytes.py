"""Decoding only the kept frames (and what they are predicted from) changes nothing: the frames,
their timestamps and every byte `vtag extract` writes are those of decoding every frame.

Clips are generated with B-frames (pyramid), an open GOP (leading B-frames after each keyframe
referencing the GOP before) and a variable frame rate; the reference is `decode_all=True`, the plain
loop that decodes every frame and asks the selector about each."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from typer.testing import CliRunner

from media_factory import frame_index_of, make_media
from vtag.cli import app
from vtag.features import media

B_FRAMES = "bframes=3:b-pyramid=normal:keyint=30:scenecut=0"
OPEN_GOP = "bframes=3:b-pyramid=normal:keyint=20:min-keyint=20:open-gop=1:scenecut=0"


def _vfr_times() -> list[float]:
    # Intervals from 15 to 95 ms in an irregular order: the sampler's marks fall between frames
    # at different offsets each second.
    steps = np.random.default_rng(3).integers(15, 96, 120) / 1000.0
    return list(np.cumsum(np.concatenate([[0.0], steps]))[:120])


CLIPS = {
    "bframes.mp4": dict(fps=30, duration_s=4.5, video_options={"x264-params": B_FRAMES}),
    "open_gop.mkv": dict(fps=30, duration_s=4.5, video_options={"x264-params": OPEN_GOP}),
    "open_gop.mp4": dict(fps=24, duration_s=4.5, video_options={"x264-params": OPEN_GOP}),
    "vfr.mp4": dict(frame_times=_vfr_times(), duration_s=6.0, video_options={"x264-params": B_FRAMES}),
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bytes")
    return {name: make_media(folder / name, size=(160, 120), **args) for name, args in CLIPS.items()}


def _planned_only(monkeypatch):
    """Make the plain loop unreachable, so a test of the planned decode cannot pass by falling back."""
    def refuse(*args, **kwargs):
        raise AssertionError("fell back to decoding every frame")
        yield  # pragma: no cover

    monkeypatch.setattr(media, "_decode_every_frame", refuse)


@pytest.mark.parametrize("name", sorted(CLIPS))
@pytest.mark.parametrize("every_ms", [1000.0, 90.0])
def test_planned_decode_gives_the_frames_of_decoding_everything(clips, name, every_ms, monkeypatch):
    path = clips[name]
    reference = list(media.sample_frames_timed(path, every_ms=every_ms, max_frames=None, decode_all=True))
    with monkeypatch.context() as patch:
        _planned_only(patch)
        planned = list(media.sample_frames_timed(path, every_ms=every_ms, max_frames=None))
    assert len(reference) >= (4 if every_ms == 1000.0 else 30)
    assert [f.index for f in planned] == [f.index for f in reference]
    assert [f.time_s for f in planned] == [f.time_s for f in reference]
    for ours, theirs in zip(planned, reference):
        assert np.array_equal(ours.rgb, theirs.rgb), (name, ours.index)
    # The frames are the ones the timestamps name (each frame draws its own index).
    assert [frame_index_of(f.rgb) for f in planned] == [f.index for f in planned]


def test_planned_decode_stops_at_max_frames(clips, monkeypatch):
    _planned_only(monkeypatch)
    frames = list(media.sample_frames_timed(clips["bframes.mp4"], every_ms=90.0, max_frames=7))
    assert len(frames) == 7 and frames[-1].index < 100


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_extract_writes_the_same_bytes_as_decoding_every_frame(clips, name, tmp_path, monkeypatch):
    path = clips[name]
    runner = CliRunner()
    planned_out, reference_out = tmp_path / "planned.tfrecord", tmp_path / "reference.tfrecord"
    with monkeypatch.context() as patch:
        _planned_only(patch)
        result = runner.invoke(app, ["extract", str(path), "-o", str(planned_out), "--random-weights"])
    assert result.exit_code == 0, result.output
    every_frame = functools.partial(media.sample_frames_timed, decode_all=True)
    with monkeypatch.context() as patch:
        patch.setattr(media, "sample_frames_timed", every_frame)
        result = runner.invoke(app, ["extract", str(path), "-o", str(reference_out), "--random-weights"])
    assert result.exit_code == 0, result.output
    assert planned_out.read_bytes() == reference_out.read_bytes()
    assert planned_out.stat().st_size > 4 * 1024  # rows of rgb codes, not an empty record
