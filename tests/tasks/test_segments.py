"""Per-segment tags (vtag.segments) and the timeline picture, on generated clips and a real record."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import av
import numpy as np
import pytest

from vtag.errors import VtagError
from vtag.tasks.classify import classify_paths
from vtag.tasks.segments import segment_windows


def classify_segments(inputs, seconds, **kwargs):
    return classify_paths(inputs, segments=seconds, **kwargs)


@pytest.mark.parametrize("duration", [0.4, 4.0, 5.0, 5.01, 12.3, 22.0, 184.0, 300.0])
def test_window_count_is_ceil_of_duration(duration):
    windows = segment_windows(duration, 5)
    assert len(windows) == math.ceil(duration / 5)
    assert windows[0][0] == 0 and windows[-1][1] == pytest.approx(duration)
    assert all(b - a <= 5 + 1e-9 for a, b in windows)


def test_bad_segment_length_is_one_line_error():
    with pytest.raises(VtagError, match="--segments"):
        segment_windows(10, 0)


def two_halves(path, seconds=22, fps=5, size=(160, 96)):
    """A video-only clip: a still of smooth colour bands for the first half, a still of random
    noise for the second (contents a random network separates easily)."""
    width, height = size
    first = np.zeros((height, width, 3), np.uint8)
    first[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    first[..., 2] = 200
    second = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=Fraction(fps))
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.options = {"preset": "ultrafast", "crf": "18"}
    for i in range(seconds * fps):
        frame = av.VideoFrame.from_ndarray(first if i < seconds * fps // 2 else second, format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


@pytest.fixture(scope="module")
def tagger():
    from vtag.tasks.classify import Tagger

    return Tagger(device="cpu", random_weights=True)  # the shipped model, random extractors


@pytest.fixture(scope="module")
def halves_prediction(tagger, tmp_path_factory):
    clip = two_halves(tmp_path_factory.mktemp("seg") / "halves.mp4")
    return next(classify_segments([clip], 5, tagger=tagger, thumbnails=4)), clip


def test_segment_scores_differ_between_halves(halves_prediction):
    prediction, _ = halves_prediction
    segments = prediction.segments
    assert len(segments) == math.ceil(22 / 5)  # 0-5, 5-10 first half; 10-15 mixed; 15-20, 20-22 second
    scores = [s.scores for s in segments]
    within = max(np.abs(scores[0] - scores[1]).max(), np.abs(scores[3] - scores[4]).max())
    across = np.abs(scores[1] - scores[3]).max()
    assert across > 10 * within, (across, within)
    assert across > 1e-3
    # whole-video labels are still there, and the JSON carries the segments
    out = prediction.to_json()
    assert [s["start"] for s in out["segments"]] == [0, 5, 10, 15, 20]
    assert out["segments"][-1]["end"] == pytest.approx(22, abs=0.3)
    assert len(out["segments"][0]["labels"]) == 5
    assert len(prediction.thumbnails) == 4


def test_frame_level_record_needs_no_decoding(tagger, shared_data, monkeypatch):
    from vtag.features import media
    from vtag.io.records import read_records

    path = shared_data / "yt8m-frame-level" / "extractor_output_184frames.tfrecord"

    def no_decoding(*args, **kwargs):
        raise AssertionError("a frame-level record must not be decoded")

    monkeypatch.setattr(media, "probe", no_decoding)
    monkeypatch.setattr(media, "sample_frames_timed", no_decoding)
    record = next(iter(read_records([path])))
    prediction = next(classify_segments([path], 5, tagger=tagger))
    assert len(prediction.segments) == math.ceil(len(record.rgb) / 5) == 37
    # a window's score is the model on that window's mean rows
    from vtag.io.records import pool_frames

    visual, audio = pool_frames(record.rgb[10:15], record.audio[10:15], tagger.input_spec)
    expected = tagger.scores(visual[None], audio[None])[0]
    np.testing.assert_allclose(prediction.segments[2].scores, expected, rtol=1e-4, atol=1e-7)  # batch-size rounding


def test_video_level_record_has_no_segments(tagger, tmp_path):
    from vtag.io.records import YT8MRecord, write_records

    path = tmp_path / "video.tfrecord"
    write_records(path, [YT8MRecord("v", None, np.zeros(1024, np.float32), np.zeros(128, np.float32))])
    with pytest.raises(VtagError, match="frame-level"):
        list(classify_segments([path], 5, tagger=tagger))


def pixel_check(path, min_bytes=5_000):
    from PIL import Image

    assert path.stat().st_size > min_bytes
    pixels = np.asarray(Image.open(path).convert("RGB"), np.float64)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 400
    assert pixels.std() > 20  # not blank


def test_timeline_png_and_svg(halves_prediction, tmp_path):
    pytest.importorskip("matplotlib", reason="the timeline needs matplotlib (vtag[plot])")
    from vtag.tasks.plots import plot_timeline

    prediction, _ = halves_prediction
    png = plot_timeline(prediction, tmp_path / "timeline.png")
    pixel_check(png)
    svg = plot_timeline(prediction, tmp_path / "timeline.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and prediction.labels[0].name in svg


def test_cli_segments_json_and_plot(tmp_path, monkeypatch):
    """`vtag classify CLIP --segments 5 --json --plot`, through the CLI."""
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib (vtag[plot])")
    from typer.testing import CliRunner

    from media_factory import make_media
    from vtag.cli import app

    clip = make_media(tmp_path / "clip.mp4", duration_s=7.5, size=(96, 64))
    result = CliRunner().invoke(app, ["classify", str(clip), "--segments", "5", "--json", "--random-weights",
                                      "--device", "cpu", "--plot", str(tmp_path / "t.png")])
    assert result.exit_code == 0, result.output
    line = next(l for l in result.stdout.splitlines() if l.startswith("{"))
    assert len(json.loads(line)["segments"]) == 2  # ceil(7.5 / 5)
    pixel_check(tmp_path / "t.png")


def test_api_passes_segments(monkeypatch, tmp_path):
    import vtag
    from vtag.tasks import classify

    seen = {}
    monkeypatch.setattr(classify, "classify_paths", lambda paths, **kw: seen.update(kw) or iter(()))
    list(vtag.classify(tmp_path / "x.mp4", segments=5, thumbnails=2))
    assert seen["segments"] == 5 and seen["thumbnails"] == 2


def test_plot_without_matplotlib_names_the_extra(monkeypatch, tmp_path):
    import sys

    from vtag.cli.report import plot_hook

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(VtagError, match=r"pip install 'vtag\[plot\]'"):
        plot_hook([tmp_path / "x.mp4"], tmp_path / "t.png", None)
