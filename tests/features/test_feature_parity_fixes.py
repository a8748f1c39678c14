"""The fixes that make vtag's features Google's (issue 10), tested without the reference packages:
AudioSet's channel mean and resampy's kaiser_best resampler, TensorFlow's x-then-y resize, PIL
for still images, YouTube-8M's half-away-from-zero quantizer. bench/verify_feature_parity.py
checks the same stages against the reference packages themselves."""

from __future__ import annotations

import decimal
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from media_factory import make_media
from vtag.features import media
from vtag.features.audio_mix import frame_channels, mix_to_mono
from vtag.errors import VtagError
from vtag.features.pca import quantize
from vtag.features.inception import _tf1_taps, tf1_resize_bilinear
from vtag.io.records import quantize_floats
from vtag.features.resample import Resampler, kaiser_best_table, output_length, resample

LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}


# ---- resampler ------------------------------------------------------------------------------------


def test_kaiser_best_table_is_resampys():
    table = kaiser_best_table()
    assert table.shape == (50 * 2 ** 13 + 1,)
    # Entries of resampy 0.4.3's data/kaiser_best.npz `half_window`, read with resampy installed.
    pinned = {0: 0.9173473712608761, 1: 0.9173473523046404, 8192: 0.08152330317945146,
              100000: -0.010423628222795207, 409600: -5.2887095330227954e-08}
    for index, value in pinned.items():
        assert table[index] == pytest.approx(value, rel=1e-12, abs=1e-18)


def _resampy_formula(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """resampy's per-output-sample loop, written out plainly (slow; short inputs only)."""
    ratio = rate_out / rate_in
    table = kaiser_best_table() * (ratio if ratio < 1 else 1.0)
    delta = np.diff(table, append=table[-1])
    scale, bits = min(1.0, ratio), 2 ** 13
    step = int(scale * bits)
    out = np.zeros(int(len(x) * rate_out / rate_in))
    for t in range(len(out)):
        position = t / ratio
        n = int(position)
        for frac, sign in ((scale * (position - n), -1), (scale - scale * (position - n), 1)):
            offset = int(frac * bits)
            eta = frac * bits - offset
            for i in range((len(table) - offset) // step):
                j = n - i if sign < 0 else n + 1 + i
                if 0 <= j < len(x):
                    k = offset + i * step
                    out[t] += (table[k] + eta * delta[k]) * x[j]
    return out


@pytest.mark.parametrize("rate_in", [44100, 48000, 8000, 22050])
def test_resampler_equals_the_per_sample_formula(rate_in):
    x = np.random.default_rng(rate_in).standard_normal(rate_in // 40)
    np.testing.assert_allclose(resample(x, rate_in, 16000), _resampy_formula(x, rate_in, 16000), rtol=0, atol=1e-12)


def test_resampler_matches_resampy_values():
    # Outputs of resampy.resample(x, 44100, 16000) / (x, 48000, 16000) (resampy 0.4.3, kaiser_best),
    # computed once with resampy installed and pinned here.
    n = np.arange(441)
    x = np.sin(2 * np.pi * 1000 * n / 44100) + 0.25 * np.cos(2 * np.pi * 7000 * n / 44100)
    y = resample(x, 44100, 16000)
    assert len(y) == 160
    for i, value in {0: 0.2026100725849733, 1: 0.18130868938630032, 37: 1.0167820145556399,
                     80: 0.24271786557528233, 159: -0.574141231755908}.items():
        assert y[i] == pytest.approx(value, abs=1e-11)
    n = np.arange(300)
    y = resample(((n * 7919) % 257 - 128) / 128.0, 48000, 16000)
    assert len(y) == 100
    for i, value in {0: -0.09483421541934621, 5: -0.22891862561760332, 50: 0.29214550285860075,
                     99: 0.0034430742114383434}.items():
        assert y[i] == pytest.approx(value, abs=1e-13)


@pytest.mark.parametrize("rate_in", [44100, 48000, 32000, 11025, 96000])
def test_streaming_equals_one_shot(rate_in):
    x = np.random.default_rng(1).standard_normal(rate_in + 123)
    whole = resample(x, rate_in, 16000)
    r = Resampler(rate_in, 16000)
    pieces = [r.push(c) for c in np.array_split(x, 13)] + [r.finish()]
    streamed = np.concatenate(pieces)
    assert len(streamed) == len(whole) == output_length(len(x), rate_in, 16000)
    np.testing.assert_allclose(streamed, whole, rtol=0, atol=1e-14)


def test_resampler_passes_the_band_and_stops_aliases():
    t = np.arange(48000 * 2) / 48000
    passed = resample(np.sin(2 * np.pi * 1000 * t), 48000, 16000)[4000:-4000]
    assert abs(np.abs(passed).max() - 1.0) < 1e-3
    alias = resample(np.sin(2 * np.pi * 12000 * t), 48000, 16000)[4000:-4000]  # would fold to 4 kHz
    assert np.abs(alias).max() < 1e-4


# ---- channel mean ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["s16", "s16p", "s32", "s32p", "flt", "fltp", "dbl", "dblp", "u8", "u8p"])
@pytest.mark.parametrize("channels", [1, 2, 6, 8])
def test_frame_channels_any_format_and_layout(fmt, channels):
    rng = np.random.default_rng(channels)
    values = rng.uniform(-1, 1, (300, channels))  # [samples, channels]
    kind = fmt.rstrip("p")
    if kind == "s16":
        stored = np.round(values * 32767).astype(np.int16)
        expected = stored / 32768.0
    elif kind == "s32":
        stored = np.round(values * 2 ** 30).astype(np.int32)
        expected = stored / 2.0 ** 31
    elif kind == "u8":
        stored = np.round(values * 127 + 128).astype(np.uint8)
        expected = (stored.astype(np.float64) - 128) / 128
    else:
        stored = values.astype(np.float32 if kind == "flt" else np.float64)
        expected = stored.astype(np.float64)
    # Filled plane by plane: PyAV's from_ndarray/to_ndarray trip over 8-channel planar frames.
    frame = av.AudioFrame(format=fmt, layout=LAYOUTS[channels], samples=len(stored))
    if fmt.endswith("p"):
        for c in range(channels):
            np.frombuffer(frame.planes[c], dtype=stored.dtype, count=len(stored))[:] = stored[:, c]
    else:
        np.frombuffer(frame.planes[0], dtype=stored.dtype, count=stored.size)[:] = stored.reshape(-1)
    got = frame_channels(frame)
    assert got.dtype == np.float64 and got.shape == (300, channels)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(mix_to_mono(got), np.mean(expected, axis=1))


def _write_int16_wav(path, samples: np.ndarray, rate: int):
    channels = samples.shape[1]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate)
        stream.layout = LAYOUTS[channels]
        for start in range(0, len(samples), 1000):
            chunk = np.ascontiguousarray(samples[start:start + 1000]).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout=LAYOUTS[channels])
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize("channels", [1, 2, 6, 8])
def test_16k_audio_is_the_references_channel_mean_exactly(tmp_path, channels):
    """AudioSet's vggish_input: int16 / 32768.0, np.mean over channels, no resampling at 16 kHz."""
    rng = np.random.default_rng(channels)
    samples = rng.integers(-20000, 20000, (16000 * 2 + 77, channels), dtype=np.int16)
    path = _write_int16_wav(tmp_path / f"c{channels}.wav", samples, 16000)
    wave = media.read_audio(path)
    np.testing.assert_array_equal(wave, np.mean(samples / 32768.0, axis=1))


def test_planar_7_1_aac_decodes(tmp_path):
    """8-channel planar float (AAC 7.1), which PyAV's own to_ndarray cannot read."""
    path = make_media(tmp_path / "s71.mkv", size=None, audio_channels=8, audio_rate=48000, duration_s=1.5)
    wave = media.read_audio(path)
    assert abs(len(wave) - 24000) < 1200
    # make_media's channel c carries 0.5 / (c + 1) of the tone: the mean's peak is their average,
    # less what AAC's band-limited LFE channel (the 4th) keeps of a 440 Hz tone.
    amplitudes = [0.5 / (c + 1) for c in range(8)]
    with_lfe, without_lfe = sum(amplitudes) / 8, (sum(amplitudes) - amplitudes[3]) / 8
    assert 0.97 * without_lfe < np.abs(wave[4000:20000]).max() < 1.03 * with_lfe


def test_stereo_is_averaged_not_downmixed(tmp_path):
    # FFmpeg's downmix makes identical channels 1.414x louder; the mean leaves them as they are.
    tone = np.round(10000 * np.sin(np.arange(16000) / 5)).astype(np.int16)
    path = _write_int16_wav(tmp_path / "same.wav", np.stack([tone, tone], axis=1), 16000)
    np.testing.assert_array_equal(media.read_audio(path), tone / 32768.0)


def test_resampled_audio_is_mean_then_kaiser_best(tmp_path):
    samples = np.random.default_rng(3).integers(-20000, 20000, (44100 * 2, 6), dtype=np.int16)
    path = _write_int16_wav(tmp_path / "a44.wav", samples, 44100)
    expected = resample(np.mean(samples / 32768.0, axis=1), 44100, 16000)
    wave = media.read_audio(path)
    assert len(wave) == len(expected) == 32000
    np.testing.assert_allclose(wave, expected, rtol=0, atol=1e-13)


def test_bounded_read_gives_the_same_samples(tmp_path):
    samples = np.random.default_rng(4).integers(-20000, 20000, (48000 * 3, 2), dtype=np.int16)
    path = _write_int16_wav(tmp_path / "a48.wav", samples, 48000)
    whole = media.read_audio(path)
    first = media.read_audio(path, max_seconds=1.0)
    assert len(first) == 16000
    np.testing.assert_array_equal(first, whole[:16000])


# ---- TF1 resize order -----------------------------------------------------------------------------


def _tf_resize_float32(image: np.ndarray, out_h: int, out_w: int, x_first: bool = True) -> np.ndarray:
    """TensorFlow's ResizeBilinear kernel in float32: top/bottom lerps along x, then along y."""
    y0, y1, wy = _tf1_taps(image.shape[0], out_h)
    x0, x1, wx = _tf1_taps(image.shape[1], out_w)
    img = image.astype(np.float32)
    wx, wy = wx[None, :, None], wy[:, None, None]
    if x_first:
        top = img[y0][:, x0] + (img[y0][:, x1] - img[y0][:, x0]) * wx
        bottom = img[y1][:, x0] + (img[y1][:, x1] - img[y1][:, x0]) * wx
        return top + (bottom - top) * wy
    left = img[y0][:, x0] + (img[y1][:, x0] - img[y0][:, x0]) * wy
    right = img[y0][:, x1] + (img[y1][:, x1] - img[y0][:, x1]) * wy
    return left + (right - left) * wx


@pytest.mark.parametrize("in_hw", [(240, 320), (97, 63), (720, 1280), (150, 100)])
def test_resize_is_bit_identical_to_tensorflows_order(in_hw):
    image = np.random.default_rng(5).integers(0, 256, in_hw + (3,), dtype=np.uint8)
    ours = tf1_resize_bilinear(torch.from_numpy(image).permute(2, 0, 1)[None], 299)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(ours, _tf_resize_float32(image, 299, 299))


def test_resize_order_is_observable():
    # Doing y first rounds differently somewhere: the test above could tell the two orders apart.
    image = np.random.default_rng(5).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    assert np.any(_tf_resize_float32(image, 299, 299) != _tf_resize_float32(image, 299, 299, x_first=False))


# ---- still images ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name,mode", [("still.jpg", "RGB"), ("still.png", "RGB"), ("alpha.png", "RGBA"),
                                       ("grey.jpg", "L"), ("palette.png", "P")])
def test_still_images_decode_as_pil(tmp_path, name, mode):
    from PIL import Image

    rng = np.random.default_rng(6)
    blocks = np.repeat(np.repeat(rng.integers(0, 256, (15, 20, 3), dtype=np.uint8), 8, 0), 8, 1)
    Image.fromarray(blocks).convert(mode).save(tmp_path / name)
    frames = list(media.sample_frames_timed(tmp_path / name))
    assert len(frames) == 1 and frames[0].index == 0 and frames[0].time_s == 0.0
    expected = np.asarray(Image.open(tmp_path / name).convert("RGB"))
    np.testing.assert_array_equal(frames[0].rgb, expected)


def test_jpeg_through_ffmpeg_would_differ(tmp_path):
    """Why PIL: FFmpeg's own JPEG -> RGB path does not reproduce libjpeg's chroma upsampling."""
    from PIL import Image

    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(tmp_path / "n.jpg", quality=90)
    with av.open(str(tmp_path / "n.jpg")) as container:
        ffmpeg = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert np.any(ffmpeg != next(iter(media.sample_frames(tmp_path / "n.jpg"))))


def test_broken_image_is_a_clear_error(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "ok.jpg")
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[:len(data) // 2])
    with pytest.raises(VtagError, match="cut.jpg"):
        list(media.sample_frames(tmp_path / "cut.jpg"))


# ---- quantization ties ----------------------------------------------------------------------------


def _python2_round_codes(features: np.ndarray) -> np.ndarray:
    """YT8M's quantize: float32 (clip + 2) * 63.75, then Python 2 round (half away from zero)."""
    scaled = (np.clip(features.astype(np.float32), np.float32(-2), np.float32(2)) + np.float32(2)) * np.float32(63.75)
    return np.array([int(decimal.Decimal(float(v)).quantize(0, rounding=decimal.ROUND_HALF_UP)) for v in scaled])


def test_quantize_ties_round_half_away_from_zero():
    ties = np.array([(k + 0.5) / 63.75 - 2.0 for k in range(255)], np.float32)
    scaled = (ties + np.float32(2)) * np.float32(63.75)
    exact = scaled == np.arange(255) + 0.5
    assert exact.sum() > 100  # most are exact ties in float32 (160 of 255)
    for codes in (quantize(ties, "round"), quantize_floats(ties)):
        np.testing.assert_array_equal(codes[exact], (np.arange(255) + 1)[exact])  # k + 0.5 -> k + 1
    # 126.5 is where round-half-to-even would give 126.
    assert quantize(np.array([126.5 / 63.75 - 2.0], np.float32), "round")[0] == 127


def test_quantize_matches_python2_round_on_random_features():
    features = np.random.default_rng(8).uniform(-2.5, 2.5, 5000).astype(np.float32)
    expected = _python2_round_codes(features)
    np.testing.assert_array_equal(quantize(features, "round"), expected)
    np.testing.assert_array_equal(quantize_floats(features), expected)
    assert quantize(np.array([-3.0, -2.0, 0.0, 2.0, 3.0], np.float32), "round").tolist() == [0, 0, 128, 255, 255]
