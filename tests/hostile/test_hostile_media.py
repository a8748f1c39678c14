"""Hostile media for the decoders (issue 11): a file cut off while it was written or downloaded, a
long silent audio file of which a few minutes are used, frames far larger than Inception's input.
Files are generated in tmp_path; memory is the peak RSS (VmHWM) of a child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from media_factory import make_media
from vtag.cli import app
from vtag.errors import VtagError
from vtag.features import media

REPO = Path(__file__).resolve().parent.parent.parent
needs_proc = pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc for peak RSS")


def _cut_in_half(source: Path, target: Path) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


# ---- a file cut off part way ----------------------------------------------------------------------


@pytest.mark.parametrize("name, options", [("cut.mkv", None), ("cut.mp4", {"movflags": "faststart"})])
@pytest.mark.parametrize("decode_all", [False, True])
def test_video_cut_in_half_is_not_taken_for_a_short_video(tmp_path, name, options, decode_all):
    # The header still says 20 s; the packets stop near 10 s. Frames up to the cut decode fine, so
    # only the declared duration tells the two apart.
    whole = make_media(tmp_path / f"whole{Path(name).suffix}", size=(160, 120), duration_s=20, fps=10,
                       container_options=options, crf=30)
    cut = _cut_in_half(whole, tmp_path / name)
    assert len(list(media.sample_frames_timed(whole, decode_all=decode_all))) == 20
    with pytest.raises(VtagError) as info:
        list(media.sample_frames_timed(cut, decode_all=decode_all))
    message = str(info.value)
    assert "\n" not in message and str(cut) in message
    assert "truncated or corrupt at " in message and " s of 20.0 s" in message
    at = float(message.split("truncated or corrupt at ")[1].split(" s")[0])
    assert 3.0 < at < 17.0


def test_cli_extract_reports_the_cut_file_and_keeps_the_others(tmp_path):
    # The cut file fails before anything is decoded (its packets end at half its duration), so
    # only the good one's single frame goes through Inception.
    whole = make_media(tmp_path / "whole.mkv", size=(96, 64), duration_s=8, fps=10, crf=30)
    good = make_media(tmp_path / "good.mkv", size=(96, 64), duration_s=1.2, fps=10)
    cut = _cut_in_half(whole, tmp_path / "cut.mkv")
    out = tmp_path / "out.tfrecord"
    result = CliRunner().invoke(app, ["extract", str(cut), str(good), "-o", str(out), "--random-weights"])
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if "truncated or corrupt" in line]
    assert len(lines) == 1 and "cut.mkv" in lines[0], result.output
    from vtag.io.records import read_records

    assert [r.id for r in read_records([out])] == ["good"]  # the cut file is not written as "ok"


def test_a_complete_short_video_is_not_called_truncated(tmp_path):
    # Ends where its header says: every frame, no error (the check compares against the header).
    path = make_media(tmp_path / "short.mp4", size=(96, 64), duration_s=3.4, fps=10,
                      container_options={"movflags": "faststart"})
    planned = list(media.sample_frames_timed(path, every_ms=100.0, max_frames=None))
    every = list(media.sample_frames_timed(path, every_ms=100.0, max_frames=None, decode_all=True))
    assert len(planned) == len(every) > 15 and planned[-1].time_s > 3.0


# ---- memory bounded by the work used --------------------------------------------------------------


def _peak_rss_of(code: str, *args: str, timeout: float = 600) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    script = code + "\nhwm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'))\n" \
                    "print(json.dumps({'hwm_mb': hwm / 1024, **result}))\n"
    proc = subprocess.run([sys.executable, "-c", "import json, sys, time\n" + script, *args], capture_output=True,
                          text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


AUDIO_CHILD = """
from vtag.features import media
from vtag.features.vggish import log_mel_examples
import numpy as np
if sys.argv[2] == "read":
    t = time.perf_counter()
    wave = media.read_audio(sys.argv[1], max_seconds=301)
    examples = log_mel_examples(wave)
    result = {"seconds": time.perf_counter() - t, "samples": int(wave.size), "examples": len(examples)}
else:
    result = {}
"""


@needs_proc
def test_long_silent_audio_reads_only_what_is_used(tmp_path):
    # An hour of silence compresses to almost nothing; decoded whole at 16 kHz float64 it would be
    # 460 MB before the STFT. Only the 301 s the features use may be decoded.
    path = make_media(tmp_path / "silence.m4a", size=None, duration_s=3600, audio_rate=8000, audio_channels=1,
                      tone_hz=0.0)
    assert path.stat().st_size < 8 * 2**20
    baseline = _peak_rss_of(AUDIO_CHILD, str(path), "imports only")
    run = _peak_rss_of(AUDIO_CHILD, str(path), "read")
    assert run["samples"] == 301 * 16000 and run["examples"] == 301
    # 301 s of float64 samples and their STFT are ~250 MB at most; the whole hour would be GBs.
    assert run["hwm_mb"] - baseline["hwm_mb"] < 400, (run, baseline)


def test_decode_threads_follow_the_frame_size_not_the_cores():
    assert media.decode_threads(1280, 720, cores=16) == 16  # small frames: the threads FFmpeg would use
    assert media.decode_threads(1280, 720, cores=2) == 3
    assert media.decode_threads(16000, 16000, cores=16) == 1  # 384 MB a frame: no frames in flight
    big = media.decode_threads(7680, 4320, cores=64)
    assert big * 7680 * 4320 * 3 // 2 <= media.FRAME_THREADS_BUDGET


FRAMES_CHILD = """
from vtag.features.extract import FeatureExtractor
fx = FeatureExtractor(random_weights=True)
t = time.perf_counter()
f = fx.extract(sys.argv[1]) if sys.argv[2] == "extract" else None
result = {"seconds": time.perf_counter() - t, "rows": f.num_frames if f else 0}
"""


@needs_proc
def test_huge_frames_use_memory_for_one_frame_at_a_time(tmp_path):
    # 6000x6000: 54 MB a decoded frame, 108 MB as RGB. Frames are converted and resized one at a
    # time and the decoder's threads are bounded by frame size, so the extraction holds a few
    # frames' worth, never one per core or per kept frame.
    path = make_media(tmp_path / "huge.mkv", size=(6000, 6000), duration_s=2.0, fps=2, audio=False, crf=40)
    small = make_media(tmp_path / "small.mkv", size=(96, 64), duration_s=2.0, fps=2, audio=False)
    baseline = _peak_rss_of(FRAMES_CHILD, str(small), "extract")  # the networks' own working memory
    run = _peak_rss_of(FRAMES_CHILD, str(path), "extract")
    assert run["rows"] == 2
    rgb_mb = 6000 * 6000 * 3 / 2**20
    assert run["hwm_mb"] - baseline["hwm_mb"] < 6 * rgb_mb, (run, baseline)
