"""VGGish frontend (framing, mel matrix, log-mel values) and network layout."""

from __future__ import annotations

import wave

import numpy as np
import pytest
import torch

from vtag.errors import VtagError
from vtag.features.vggish import VGGish, load_vggish, log_mel_examples, log_mel_spectrogram, mel_matrix


def _read_wav(path) -> np.ndarray:
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 16000)
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return pcm / 32768.0  # vggish_input's int16 scaling


@pytest.fixture(scope="module")
def speech(shared_data) -> np.ndarray:
    return _read_wav(shared_data / "media" / "speech_16k_mono_4s.wav")


# ---- framing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("samples,frames,examples_1s,examples_096s", [
    (64000, 398, 4, 4),      # 4 s: 1 + (64000 - 400) // 160 = 398 frames; 1 + (398 - 96) // 100 = 4
    (160000, 998, 10, 10),   # 10 s: 998 frames; hop 100 -> 10, hop 96 -> 1 + 902 // 96 = 10
    (480000, 2998, 30, 31),  # 30 s: hop 100 -> 1 + 2902 // 100 = 30; hop 96 -> 1 + 2902 // 96 = 31
    (15600, 96, 1, 1),       # exactly one 96-frame window (0.975 s)
    (15599, 95, 0, 0),       # one sample short of it
    (399, 0, 0, 0),          # shorter than one STFT window
])
def test_frame_and_example_counts(samples, frames, examples_1s, examples_096s):
    audio = np.zeros(samples)
    assert log_mel_spectrogram(audio).shape == (frames, 64)
    assert log_mel_examples(audio).shape == (examples_1s, 96, 64)
    assert log_mel_examples(audio, example_hop_seconds=0.96).shape == (examples_096s, 96, 64)


def test_examples_hop_by_one_second():
    rng = np.random.default_rng(0)
    audio = rng.uniform(-0.5, 0.5, 16000 * 3)
    frames = log_mel_spectrogram(audio)
    examples = log_mel_examples(audio)
    assert examples.dtype == np.float32
    np.testing.assert_allclose(examples[1], frames[100:196], rtol=1e-6)
    np.testing.assert_allclose(examples[2], frames[200:296], rtol=1e-6)


def test_bad_audio_is_a_clear_error():
    with pytest.raises(VtagError, match="1-D"):
        log_mel_examples(np.zeros((16000, 2)))
    with pytest.raises(VtagError, match="float"):
        log_mel_examples(np.zeros(16000, dtype=np.int16))


# ---- mel matrix ---------------------------------------------------------------------------------


def _mel(hz):
    return 1127.0 * np.log(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _hz(mel):
    return 700.0 * (np.exp(np.asarray(mel) / 1127.0) - 1.0)


def test_mel_matrix_shape_and_basic_properties():
    weights = mel_matrix()
    assert weights.shape == (257, 64)
    assert (weights >= 0).all() and weights.max() <= 1.0
    assert (weights[0] == 0).all()  # DC bin
    assert (weights.sum(axis=0) > 0).all()  # every band sees some bins


def test_mel_bands_sit_on_the_htk_scale():
    weights = mel_matrix()
    bin_hz = np.arange(257) * 8000.0 / 256
    bin_mel = _mel(bin_hz)
    edges_mel = np.linspace(_mel(125.0), _mel(7500.0), 66)
    assert _hz(edges_mel[0]) == pytest.approx(125.0) and _hz(edges_mel[-1]) == pytest.approx(7500.0)
    for band in range(64):
        lower, center, upper = edges_mel[band:band + 3]
        nonzero = np.flatnonzero(weights[:, band])
        # Exactly the bins strictly between the band's outer edges (in mel) carry weight.
        inside = np.flatnonzero((bin_mel > lower) & (bin_mel < upper))
        assert set(nonzero) == set(inside)
        # The triangle is symmetric in mel, so the peak is the bin nearest the centre in mel.
        peak = int(np.argmax(weights[:, band]))
        assert peak == inside[np.argmin(np.abs(bin_mel[inside] - center))]
        # Linear in mel on both sides, 1 at the centre, 0 at the outer edges.
        expected = np.minimum((bin_mel[inside] - lower) / (center - lower), (upper - bin_mel[inside]) / (upper - center))
        np.testing.assert_allclose(weights[inside, band], expected, rtol=1e-12)
    # 1127 ln(1 + f/700) evaluated once in float64: 125 Hz is 185.170 mel, 7500 Hz is 2773.332 mel, so
    # the 66 edges step by 39.818 mel and band 0 peaks at 154.669 Hz.
    assert _mel(125.0) == pytest.approx(185.170, abs=1e-3) and _mel(7500.0) == pytest.approx(2773.332, abs=1e-3)
    assert edges_mel[1] - edges_mel[0] == pytest.approx(39.818, abs=1e-3)
    assert _hz(edges_mel[1]) == pytest.approx(154.669, abs=1e-3)


def test_first_and_last_band_edges():
    weights = mel_matrix()
    bin_hz = np.arange(257) * 31.25
    # Band 0 spans 125 Hz .. edge 2; its first used bin is 156.25 Hz (bin 5): 125 Hz itself is bin 4.
    assert np.flatnonzero(weights[:, 0])[0] == 5
    # The last band's support ends below 7500 Hz (bin 240 is exactly 7500 Hz and gets weight 0).
    assert bin_hz[np.flatnonzero(weights[:, 63])[-1]] < 7500.0
    assert weights[240, 63] == 0.0


# ---- log-mel values -----------------------------------------------------------------------------


def _reference_log_mel_frame(audio: np.ndarray, frame: int) -> np.ndarray:
    """One 10 ms frame from the formulas alone: a direct DFT (no FFT) of the periodic-Hann window
    of 400 samples at hop 160, zero-padded to 512 points, and HTK-mel triangles built bin by bin."""
    n = np.arange(400)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / 400)
    segment = audio[frame * 160: frame * 160 + 400] * window
    magnitude = np.array([abs(np.sum(segment * np.exp(-2j * np.pi * k * n / 512))) for k in range(257)])
    edges = np.linspace(_mel(125.0), _mel(7500.0), 66)
    mel_energy = np.zeros(64)
    for k in range(1, 257):  # bin 0 (DC) has weight zero
        m = _mel(k * 8000.0 / 256)
        for band in range(64):
            lo, c, hi = edges[band:band + 3]
            weight = max(0.0, min((m - lo) / (c - lo), (hi - m) / (hi - c)))
            mel_energy[band] += weight * magnitude[k]
    return np.log(mel_energy + 0.01)


def test_log_mel_matches_a_direct_dft_reference(speech):
    examples = log_mel_examples(speech)
    assert examples.shape == (4, 96, 64)
    for example, frame in [(0, 0), (0, 37), (1, 50), (2, 3), (3, 95)]:
        expected = _reference_log_mel_frame(speech, example * 100 + frame)
        np.testing.assert_allclose(examples[example, frame], expected, rtol=0, atol=2e-5)


def test_log_mel_pinned_values(speech):
    # Computed once with _reference_log_mel_frame above (direct DFT, float64) on this WAV, rounded to
    # 6 decimals: frame 10 band 5, frame 150 band 20, frame 203 band 40, frame 395 band 63.
    examples = log_mel_examples(speech)
    pinned = {(0, 10, 5): -0.096383, (1, 50, 20): -1.179913, (2, 3, 40): -3.723521, (3, 95, 63): -4.509597}
    for index, value in pinned.items():
        assert examples[index] == pytest.approx(value, abs=1e-5), index


# ---- network ------------------------------------------------------------------------------------


def test_state_dict_matches_torchvggish_layout():
    expected = {
        "features.0.weight": (64, 1, 3, 3), "features.0.bias": (64,),
        "features.3.weight": (128, 64, 3, 3), "features.3.bias": (128,),
        "features.6.weight": (256, 128, 3, 3), "features.6.bias": (256,),
        "features.8.weight": (256, 256, 3, 3), "features.8.bias": (256,),
        "features.11.weight": (512, 256, 3, 3), "features.11.bias": (512,),
        "features.13.weight": (512, 512, 3, 3), "features.13.bias": (512,),
        "embeddings.0.weight": (4096, 12288), "embeddings.0.bias": (4096,),
        "embeddings.2.weight": (4096, 4096), "embeddings.2.bias": (4096,),
        "embeddings.4.weight": (128, 4096), "embeddings.4.bias": (128,),
    }
    got = {k: tuple(v.shape) for k, v in VGGish().state_dict().items()}
    assert got == expected


def test_forward_shapes_and_pre_relu_output():
    model = load_vggish(random_weights=True)
    examples = torch.from_numpy(np.random.default_rng(0).normal(-2.0, 2.0, (3, 96, 64)).astype(np.float32))
    captured = {}
    # (hooks must return None, or they replace the module's output)
    model.embeddings[0].register_forward_hook(lambda m, inp, out: captured.update(fc_in=inp[0]))
    model.features.register_forward_hook(lambda m, inp, out: captured.update(conv_out=out))
    with torch.inference_mode():
        out = model(examples)
        out4 = model(examples[:, None])
    assert out.shape == (3, 128) and out.dtype == torch.float32
    torch.testing.assert_close(out, out4)
    # The embedding is taken before the final ReLU: negative values must survive.
    assert (out < 0).any()
    # The conv output [B, 512, 6, 4] is flattened in TF's NHWC order.
    conv = captured["conv_out"]
    assert conv.shape == (3, 512, 6, 4)
    torch.testing.assert_close(captured["fc_in"], conv.permute(0, 2, 3, 1).reshape(3, -1))
    with pytest.raises(ValueError):
        model(torch.zeros(1, 64, 96))


def test_missing_weights_name_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("VTAG_CACHE", str(tmp_path))
    with pytest.raises(VtagError, match="vtag weights"):
        load_vggish()
