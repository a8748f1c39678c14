"""VGGish as released with AudioSet: the log-mel frontend (NumPy) and the network (PyTorch).

Frontend, as in AudioSet's `mel_features.py` / `vggish_input.py`: 16 kHz mono; STFT with a 400-sample
(25 ms) periodic Hann window, hop 160 (10 ms), FFT 512, magnitude; 64 mel bands 125-7500 Hz on the
HTK mel scale with triangles built in the mel domain and the DC bin weighted zero; `log(mel + 0.01)`;
examples of 96 frames (0.96 s). AudioSet hops examples by 0.96 s; YouTube-8M's graph hops by 1.0 s so
one audio row lines up with each second of video, hence `example_hop_seconds=1.0` by default.

Network: weights from AudioSet's `vggish_model.ckpt` (preferred) or torchvggish's port, mapped onto
torchvggish's `vggish-10086976.pth` layout (`features.*` conv stack, `embeddings.*`
12288 -> 4096 -> 4096 -> 128). The embedding is the last layer's output with no ReLU after it, as in
AudioSet's model; public ports that keep torchvggish's final ReLU zero out the negative components.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from vtag.errors import VtagError

SAMPLE_RATE = 16000
STFT_WINDOW = 400  # 25 ms
STFT_HOP = 160  # 10 ms
FFT_LENGTH = 512  # next power of two above the window
NUM_BANDS = 64
LOWER_EDGE_HZ = 125.0
UPPER_EDGE_HZ = 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96  # 0.96 s of 10 ms frames
FRAMES_PER_SECOND = SAMPLE_RATE / STFT_HOP
EMBEDDING_DIM = 128
WEIGHT_FILE = "vggish-10086976.pth"


def hertz_to_mel(hertz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: 1127 ln(1 + f / 700)."""
    return 1127.0 * np.log(1.0 + np.asarray(hertz, dtype=np.float64) / 700.0)


def mel_matrix(num_bands: int = NUM_BANDS, num_spectrogram_bins: int = FFT_LENGTH // 2 + 1,
               sample_rate: int = SAMPLE_RATE, lower_edge_hz: float = LOWER_EDGE_HZ,
               upper_edge_hz: float = UPPER_EDGE_HZ) -> np.ndarray:
    """[num_spectrogram_bins, num_bands] weights mapping an STFT magnitude row to mel bands.

    Band i is a triangle in the mel domain rising from edge i to a peak at edge i+1 and falling to
    edge i+2, with edges evenly spaced in mel between the lower and upper frequencies.
    """
    nyquist = sample_rate / 2.0
    if not 0.0 <= lower_edge_hz < upper_edge_hz <= nyquist:
        raise ValueError(f"mel band edges need 0 <= {lower_edge_hz} < {upper_edge_hz} <= {nyquist}")
    bins_mel = hertz_to_mel(np.linspace(0.0, nyquist, num_spectrogram_bins))
    edges_mel = np.linspace(hertz_to_mel(lower_edge_hz), hertz_to_mel(upper_edge_hz), num_bands + 2)
    lower, center, upper = edges_mel[:-2], edges_mel[1:-1], edges_mel[2:]
    rising = (bins_mel[:, None] - lower) / (center - lower)
    falling = (upper - bins_mel[:, None]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    # The DC bin carries no band energy, whatever the lower edge (as in AudioSet's frontend).
    weights[0, :] = 0.0
    return weights


def _frame(signal: np.ndarray, window: int, hop: int) -> np.ndarray:
    """Full windows only: [1 + (len - window) // hop, window] (zero rows if too short)."""
    count = 0 if len(signal) < window else 1 + (len(signal) - window) // hop
    if count == 0:
        return np.zeros((0, window) + signal.shape[1:], dtype=signal.dtype)
    strides = (signal.strides[0] * hop,) + signal.strides
    return np.lib.stride_tricks.as_strided(signal, (count, window) + signal.shape[1:], strides,
                                           writeable=False)


def periodic_hann(length: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)


def log_mel_spectrogram(waveform_16k: np.ndarray) -> np.ndarray:
    """[num_frames, 64] float64 log-mel frames, one per 10 ms hop."""
    frames = _frame(np.asarray(waveform_16k, dtype=np.float64), STFT_WINDOW, STFT_HOP)
    magnitude = np.abs(np.fft.rfft(frames * periodic_hann(STFT_WINDOW), n=FFT_LENGTH))
    return np.log(magnitude @ mel_matrix() + LOG_OFFSET)


def log_mel_examples(waveform_16k: np.ndarray, example_hop_seconds: float = 1.0) -> np.ndarray:
    """16 kHz mono samples (float, nominally in [-1, 1]) -> VGGish input examples [N, 96, 64] float32.

    One example per `example_hop_seconds` (1.0 s: YouTube-8M; 0.96 s: AudioSet's own embeddings);
    audio shorter than 0.975 s (one full 96-frame window) gives N = 0.
    """
    waveform = np.asarray(waveform_16k)
    if waveform.ndim != 1:
        raise VtagError(f"VGGish needs mono audio as a 1-D array, got shape {waveform.shape}")
    if not np.issubdtype(waveform.dtype, np.floating):
        raise VtagError(f"VGGish needs float samples in [-1, 1], got dtype {waveform.dtype}")
    hop_frames = int(round(example_hop_seconds * FRAMES_PER_SECOND))
    if hop_frames < 1:
        raise VtagError(f"example hop of {example_hop_seconds} s is shorter than one 10 ms frame")
    log_mel = log_mel_spectrogram(waveform)
    return np.ascontiguousarray(_frame(log_mel, EXAMPLE_FRAMES, hop_frames), dtype=np.float32)


class VGGish(nn.Module):
    """log-mel examples [B, 96, 64] or [B, 1, 96, 64] -> 128-d embeddings (pre-ReLU) [B, 128]."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 1
        # VGG configuration "A"-like: numbers are conv widths, "M" a 2x2 max pool.
        for item in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M"):
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                in_channels = item
        self.features = nn.Sequential(*layers)
        # Indices 0, 2, 4 hold the Linear layers, as in the published state dict; there is no ReLU
        # after the last one on purpose.
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 6 * 4, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, EMBEDDING_DIM),
        )

    def forward(self, log_mel: Tensor) -> Tensor:
        if log_mel.ndim == 3:
            log_mel = log_mel.unsqueeze(1)
        if log_mel.shape[1:] != (1, EXAMPLE_FRAMES, NUM_BANDS):
            raise ValueError(f"expected log-mel [B, 96, 64] or [B, 1, 96, 64], got {tuple(log_mel.shape)}")
        device = self.embeddings[0].weight.device
        x = self.features(log_mel.to(device, torch.float32))
        # The TF model flattens NHWC; [B, C, H, W] -> [B, H, W, C] keeps the fc weights' order.
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        return self.embeddings(x)


def load_vggish(random_weights: bool = False, device: str | torch.device = "cpu",
                seed: int = 0) -> VGGish:
    """VGGish in eval mode: official weights from the cache, or seeded random weights."""
    if random_weights:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = VGGish()
            for module in model.modules():
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                    nn.init.zeros_(module.bias)
            # He init leaves the 128 outputs with a spread of about 6 on speech; a sixth of that keeps
            # the PCA'd, quantized stand-in features mostly inside [-2, 2] instead of clipped.
            model.embeddings[-1].weight.data.div_(6.0)
    else:
        from vtag.features.vggish_weights import load_network_state, network_weights_path

        model = VGGish()
        model.load_state_dict(load_network_state(network_weights_path()), strict=True)
    return model.to(device).eval()
