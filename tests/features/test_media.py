"""vtag.features.media: YT8M frame sampling (OpenCV's semantics), rotation, VFR, odd sizes, audio to 16 kHz mono,
missing tracks and broken files. Media are generated with tests/media_factory.py (frames carry their
own index, so the test can tell which frames were kept) or taken from the shared real data."""

from __future__ import annotations

import weakref

import numpy as np
import pytest

from media_factory import frame_index_of, make_broken, make_media
from vtag.features import media
from vtag.errors import VtagError

BIKES_KEPT = [0, 26, 51, 76, 101, 126, 151, 176, 201, 226]


# ---- the sampling rule ----------------------------------------------------------------------------


def test_select_frames_reproduces_opencv_position_semantics():
    # 25 fps: frame 25 sits exactly on 1000 ms, so it is read-and-dropped and frame 26 is kept;
    # the next mark is 1000 + 1000 (the dropped frame's time, not the kept one's).
    times = [i * 40.0 for i in range(250)]
    assert media.select_frames(times) == BIKES_KEPT
    # If CAP_PROP_POS_MSEC meant "time of the next frame" the answer would be 0, 25, 50, ...: not this.
    assert media.select_frames(times)[1] != 25


def test_select_frames_30fps_and_cap():
    times = [i * 1000.0 / 30 for i in range(30 * 5)]
    # frame 30 is at exactly 1000 ms -> dropped, 31 kept; frame 60 at 2000 ms -> 61 kept; ...
    assert media.select_frames(times) == [0, 31, 61, 91, 121]
    assert media.select_frames(times, max_frames=2) == [0, 31]
    assert media.select_frames(times, every_ms=500, max_frames=3) == [0, 16, 31]


def test_select_frames_variable_rate_uses_timestamps():
    # A gap: the frame read after the gap already passes the mark, so the one after it is kept.
    times = [0, 100, 150, 900, 1000, 1020, 1800, 2500, 2510, 3700, 3710]
    assert media.select_frames(times) == [0, 5, 8, 10]


def test_frame_selector_counts_and_stops():
    selector = media.FrameSelector(max_frames=1)
    assert selector.keep(0.0) is True
    assert selector.done
    assert selector.keep(5000.0) is False


# ---- real files -----------------------------------------------------------------------------------


def test_bikes_kept_indices_and_times(shared_data):
    frames = list(media.sample_frames_timed(shared_data / "media" / "bikes.mp4"))
    assert [f.index for f in frames] == BIKES_KEPT
    np.testing.assert_allclose([f.time_s for f in frames], [0.0] + [1.04 + k for k in range(9)], atol=1e-9)
    assert all(f.rgb.shape == (272, 640, 3) and f.rgb.dtype == np.uint8 for f in frames)


def test_bikes_max_frames_cap(shared_data):
    frames = list(media.sample_frames_timed(shared_data / "media" / "bikes.mp4", max_frames=3))
    assert [f.index for f in frames] == [0, 26, 51]


def test_sample_frames_yields_plain_arrays(shared_data):
    first = next(iter(media.sample_frames(shared_data / "media" / "bikes.mp4", max_frames=1)))
    assert isinstance(first, np.ndarray) and first.shape == (272, 640, 3)


def test_video_only_and_audio_only_flags(shared_data):
    bikes = media.probe(shared_data / "media" / "bikes.mp4")
    assert (bikes.has_video, bikes.has_audio, bikes.lacks) == (True, False, "audio")
    assert (bikes.width, bikes.height, bikes.fps) == (640, 272, 25.0)
    mp3 = media.probe(shared_data / "media" / "6457__dobroide__sunday-02.mp3")
    assert (mp3.has_video, mp3.has_audio, mp3.lacks) == (False, True, "video")
    with pytest.raises(VtagError, match="bikes.mp4: has no audio track"):
        media.read_audio(shared_data / "media" / "bikes.mp4")
    with pytest.raises(VtagError, match="sunday-02.mp3: has no video track"):
        list(media.sample_frames(shared_data / "media" / "6457__dobroide__sunday-02.mp3"))


def test_mp3_44k_mono_resampled_length(shared_data):
    path = shared_data / "media" / "6457__dobroide__sunday-02.mp3"
    wave = media.read_audio(path)
    assert wave.dtype == np.float64 and wave.ndim == 1
    assert abs(len(wave) / 16000 - media.probe(path).duration_s) < 0.03  # 17.6 s
    assert 0.05 < np.abs(wave).max() <= 1.0


def test_six_channel_aac_downmixed(shared_data):
    path = shared_data / "media" / "bigbuckbunny.mp4"
    info = media.probe(path)
    assert info.audio_channels == 6 and info.audio_rate == 48000
    wave = media.read_audio(path)
    assert abs(len(wave) / 16000 - 5.28) < 0.06
    assert np.abs(wave).max() > 0.01


def test_read_audio_max_seconds(shared_data):
    wave = media.read_audio(shared_data / "media" / "6457__dobroide__sunday-02.mp3", max_seconds=3)
    assert len(wave) == 3 * 16000


# ---- generated files ------------------------------------------------------------------------------


def test_generated_48k_stereo_audio(tmp_path):
    path = make_media(tmp_path / "tone.mp4", duration_s=2.0, audio_rate=48000, audio_channels=2, tone_hz=440)
    wave = media.read_audio(path)
    assert abs(len(wave) - 32000) < 0.01 * 16000 + 100  # codec priming/padding only
    spectrum = np.abs(np.fft.rfft(wave[4000:20000]))
    assert abs(np.argmax(spectrum) * 16000 / 16000 - 440) < 2  # 1 Hz bins over 1 s


@pytest.mark.parametrize("suffix,codec,channels,rate", [
    (".mkv", "flac", 1, 22050), (".webm", "libopus", 2, 48000), (".avi", "pcm_s16le", 6, 44100),
    (".mkv", "libmp3lame", 2, 32000),
])
def test_containers_and_audio_codecs(tmp_path, suffix, codec, channels, rate):
    path = make_media(tmp_path / f"clip{suffix}", duration_s=2.2, audio_codec=codec, audio_channels=channels,
                      audio_rate=rate)
    frames = list(media.sample_frames_timed(path))
    assert [f.index for f in frames] == [0, 26, 51]
    assert [frame_index_of(f.rgb) for f in frames] == [0, 26, 51]
    wave = media.read_audio(path)
    assert abs(len(wave) / 16000 - 2.2) < 0.08


def test_variable_frame_rate_clip(tmp_path):
    times = [0, 0.1, 0.15, 0.9, 1.0, 1.02, 1.8, 2.5, 2.51, 3.7, 3.71]
    for suffix in (".mkv", ".mp4"):
        path = make_media(tmp_path / f"vfr{suffix}", frame_times=times, audio=False)
        frames = list(media.sample_frames_timed(path))
        expected = media.select_frames([t * 1000 for t in times])
        assert expected == [0, 5, 8, 10]
        assert [f.index for f in frames] == expected
        assert [frame_index_of(f.rgb) for f in frames] == expected  # the pixels are those frames'
        np.testing.assert_allclose([f.time_s for f in frames], [times[i] for i in expected], atol=1e-3)


@pytest.mark.parametrize("size", [(97, 63), (65, 50), (64, 49)])
def test_odd_sizes(tmp_path, size):
    path = make_media(tmp_path / "odd.mp4", size=size, duration_s=1.2, audio=False)
    frames = list(media.sample_frames_timed(path))
    assert [f.rgb.shape for f in frames] == [(size[1], size[0], 3)] * 2
    assert [frame_index_of(f.rgb) for f in frames] == [0, 26]
    assert (media.probe(path).width, media.probe(path).height) == size


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_metadata_makes_frames_upright(tmp_path, rotation):
    path = make_media(tmp_path / "rot.mp4", size=(96, 64), duration_s=1.2, audio=False, rotation=rotation)
    info = media.probe(path)
    assert info.rotation == rotation
    assert (info.width, info.height) == ((64, 96) if rotation % 180 else (96, 64))
    frames = list(media.sample_frames_timed(path))
    assert frames[0].rgb.shape == ((96, 64, 3) if rotation % 180 else (64, 96, 3))
    # Undo the display rotation: the stored picture (with its index band on top) comes back.
    for frame in frames:
        stored = np.rot90(frame.rgb, k=-rotation // 90)
        assert frame_index_of(stored) == frame.index


def test_apply_rotation_counter_clockwise():
    img = np.zeros((2, 3, 3), np.uint8)
    img[0, 0] = 255  # top-left marker
    # Shown rotated 90 degrees counter-clockwise, the top-left corner ends up bottom-left.
    assert media.apply_rotation(img, 90)[2, 0, 0] == 255
    assert media.apply_rotation(img, -90)[0, 1, 0] == 255  # clockwise: top-right
    assert media.apply_rotation(img, 180)[1, 2, 0] == 255
    assert media.apply_rotation(img, 0) is img
    assert media.apply_rotation(img, 89.6).shape == (3, 2, 3)


def test_audio_aligned_to_video_start(tmp_path):
    path = make_media(tmp_path / "late.mkv", duration_s=2.0, audio_offset_s=0.5)
    aligned = media.read_audio(path)
    assert np.abs(aligned[: int(0.49 * 16000)]).max() == 0.0  # silence until the audio starts
    assert np.abs(aligned[int(0.52 * 16000): int(0.6 * 16000)]).max() > 0.1
    raw = media.read_audio(path, align_to_video=False)
    assert len(aligned) - len(raw) == 8000


def test_audio_only_generated(tmp_path):
    path = make_media(tmp_path / "tone.m4a", size=None, duration_s=1.5, audio_channels=1, audio_rate=44100)
    info = media.probe(path)
    assert (info.has_video, info.has_audio) == (False, True)
    assert abs(len(media.read_audio(path)) / 16000 - 1.5) < 0.05


# ---- streaming ------------------------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def _rss_growth_while_streaming(path) -> int:
    base = peak = _rss_bytes()
    for frame in media.sample_frames(path, every_ms=200, max_frames=None):
        assert frame.shape == (240, 320, 3)
        peak = max(peak, _rss_bytes())
    return peak - base


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/status"), reason="needs Linux /proc for RSS")
def test_streaming_memory_does_not_grow(tmp_path):
    # 60 s vs 6 s of 320x240 video, a frame kept every 200 ms: 300 vs 30 frames of 230 KB. A
    # sampler that gathered its frames would grow by ~69 MB on the long clip; a streaming one stays
    # at the decoder's own buffers whatever the length.
    short = make_media(tmp_path / "short.mp4", size=(320, 240), duration_s=6, fps=10, audio=False, crf=40)
    long = make_media(tmp_path / "long.mp4", size=(320, 240), duration_s=60, fps=10, audio=False, crf=40)
    _rss_growth_while_streaming(short)  # warm up: codec tables, thread stacks
    growth_short, growth_long = _rss_growth_while_streaming(short), _rss_growth_while_streaming(long)
    assert growth_long < growth_short + 15 * 2**20, (growth_short, growth_long)


def test_yielded_frames_are_released(shared_data):
    # The generator keeps no reference to a frame once it has moved on to the next one.
    refs = []
    for frame in media.sample_frames(shared_data / "media" / "bikes.mp4"):
        refs.append(weakref.ref(frame))
        del frame
        assert all(ref() is None for ref in refs[:-1])
    assert len(refs) == 10


# ---- broken inputs --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["empty", "text", "garbage", "truncated", "headless", "cut", "scrambled"])
def test_broken_files_raise_one_line_vtag_error(tmp_path, shared_data, kind):
    path = make_broken(tmp_path / f"broken_{kind}.mp4", kind, source=shared_data / "media" / "bigbuckbunny.mp4")
    with pytest.raises(VtagError) as info:
        media.probe(path)
        list(media.sample_frames(path))
        media.read_audio(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(VtagError, match="no such file"):
        media.probe(tmp_path / "nope.mp4")
    with pytest.raises(VtagError, match="is a directory"):
        list(media.sample_frames(tmp_path))


def test_scrambled_stream_does_not_crash(tmp_path):
    # Container headers intact, packets random: decoding either stops early or raises VtagError,
    # never anything else.
    source = make_media(tmp_path / "ok.mkv", duration_s=3)
    path = make_broken(tmp_path / "scrambled.mkv", "scrambled", source=source)
    try:
        frames = list(media.sample_frames(path))
        wave = media.read_audio(path)
    except VtagError as exc:
        assert str(path) in str(exc)
    else:
        assert len(frames) <= 3 and len(wave) <= 3.1 * 16000
