"""From network outputs to YouTube-8M features: PCA (+ whitening for the visual side) and 8-bit
quantization.

Visual (YT8M's `yt8m_pca.tgz`): `f = ((x - mean) @ eigenvecs.T[:, :1024]) / sqrt(eigenvals[:1024] + 1e-4)`,
i.e. the rows of `eigenvecs.npy` are the principal directions, sorted by decreasing eigenvalue.
Audio (AudioSet's VGGish postprocessor): `eigvecs @ (x - means)`, all 128 components, no whitening.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from vtag.errors import VtagError

RGB_INPUT_DIM = 2048
RGB_DIM = 1024
AUDIO_DIM = 128
WHITENING_EPSILON = 1e-4
QUANT_MIN = -2.0
QUANT_MAX = 2.0

YT8M_PCA_FILE = "yt8m_pca.tgz"
VGGISH_PCA_TORCH_FILE = "vggish_pca_params-970ea276.pth"
VGGISH_PCA_NPZ_FILE = "vggish_pca_params.npz"


def _random_rotation(dim: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))  # uniformly random, not biased by QR's sign convention


def _random_orthonormal(dim: int, rng: np.random.Generator) -> np.ndarray:
    """A random orthogonal matrix. Large ones are the Kronecker product of two small random
    rotations (still orthogonal): a 2048x2048 QR takes tens of seconds on a busy 2-core machine,
    and this is only a stand-in for --random-weights."""
    if dim <= 256:
        return _random_rotation(dim, rng)
    small = 1 << (int(np.log2(dim)) // 2)
    if dim % small:
        return _random_rotation(dim, rng)
    return np.kron(_random_rotation(small, rng), _random_rotation(dim // small, rng))


class YT8MPCA:
    """Projects Inception pool_3 features [..., 2048] onto the top 1,024 components, whitened."""

    def __init__(self, mean: np.ndarray, eigenvals: np.ndarray, eigenvecs: np.ndarray,
                 source: str = "arrays") -> None:
        mean = np.asarray(mean, dtype=np.float64).reshape(-1)
        eigenvals = np.asarray(eigenvals, dtype=np.float64).reshape(-1)
        eigenvecs = np.asarray(eigenvecs, dtype=np.float64)
        expected = {"mean": (mean.shape, (RGB_INPUT_DIM,)), "eigenvals": (eigenvals.shape, (RGB_INPUT_DIM,)),
                    "eigenvecs": (eigenvecs.shape, (RGB_INPUT_DIM, RGB_INPUT_DIM))}
        for name, (got, want) in expected.items():
            if got != want:
                raise VtagError(f"{source}: YT8M PCA {name} has shape {got}, expected {want} "
                                f"(re-fetch it with `vtag weights pull {YT8M_PCA_FILE}`)")
        self.mean = mean
        # Rows of eigenvecs.npy are components; keep the first 1,024 as columns of a projection.
        self.projection = eigenvecs.T[:, :RGB_DIM] / np.sqrt(eigenvals[:RGB_DIM] + WHITENING_EPSILON)
        self._torch_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def from_dir(cls, directory: str | Path) -> "YT8MPCA":
        directory = Path(directory)
        arrays = {}
        for name in ("mean", "eigenvals", "eigenvecs"):
            path = directory / f"{name}.npy"
            try:
                arrays[name] = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise VtagError(f"{path}: cannot read YT8M PCA array ({exc}); "
                                f"run `vtag weights pull {YT8M_PCA_FILE}`") from None
        return cls(**arrays, source=str(directory))

    @classmethod
    def random(cls, seed: int = 0) -> "YT8MPCA":
        """A stand-in for --random-weights: a random rotation, a decaying eigenvalue spectrum of
        the real one's order of magnitude (about 15 down to 1e-3) and a mean around 0.4."""
        rng = np.random.default_rng(seed)
        eigenvals = 15.0 * np.exp(-np.linspace(0.0, 9.0, RGB_INPUT_DIM))
        mean = np.abs(rng.normal(0.4, 0.2, RGB_INPUT_DIM))
        return cls(mean, eigenvals, _random_orthonormal(RGB_INPUT_DIM, rng), source="random")

    def __call__(self, pool3: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """[..., 2048] -> [..., 1024] float32 (NumPy in, NumPy out; a tensor stays on its device)."""
        if isinstance(pool3, torch.Tensor):
            mean, projection = self._tensors(pool3.device)
            return ((pool3.to(torch.float64) - mean) @ projection).to(torch.float32)
        x = np.asarray(pool3, dtype=np.float64)
        return ((x - self.mean) @ self.projection).astype(np.float32)

    def _tensors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (device.type, device.index)
        if key not in self._torch_cache:
            self._torch_cache[key] = (torch.from_numpy(self.mean).to(device),
                                      torch.from_numpy(self.projection).to(device))
        return self._torch_cache[key]


def _numpy_array_globals() -> list:
    """What a pickled NumPy array needs from the weights-only unpickler (torchvggish's PCA .pth holds
    NumPy arrays, not tensors): array reconstruction and dtypes, under both the NumPy 1 module name
    that old files carry and the NumPy 2 one. Nothing that can run arbitrary code."""
    core = getattr(np, "_core", None) or np.core
    reconstruct = core.multiarray._reconstruct
    float_dtypes = {type(np.dtype(t)) for t in ("float16", "float32", "float64")}
    return [reconstruct, (reconstruct, "numpy.core.multiarray._reconstruct"), np.ndarray, np.dtype, *float_dtypes]


class VGGishPCA:
    """AudioSet's VGGish postprocessing PCA: embeddings [..., 128] -> eigvecs @ (x - means)."""

    def __init__(self, eigen_vectors: np.ndarray, means: np.ndarray, source: str = "arrays") -> None:
        eigen_vectors = np.asarray(eigen_vectors, dtype=np.float64)
        means = np.asarray(means, dtype=np.float64).reshape(-1)
        if eigen_vectors.shape != (AUDIO_DIM, AUDIO_DIM) or means.shape != (AUDIO_DIM,):
            raise VtagError(f"{source}: VGGish PCA arrays have shapes {eigen_vectors.shape} and "
                            f"{means.shape}, expected (128, 128) and (128,)")
        self.eigen_vectors = eigen_vectors
        self.means = means

    @classmethod
    def from_file(cls, path: str | Path) -> "VGGishPCA":
        """torchvggish's `.pth` (tensors `pca_eigen_vectors`, `pca_means`) or AudioSet's `.npz`."""
        path = Path(path)
        try:
            if path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as npz:
                    arrays = {k: npz[k] for k in ("pca_eigen_vectors", "pca_means")}
            else:
                with torch.serialization.safe_globals(_numpy_array_globals()):
                    state = torch.load(path, map_location="cpu", weights_only=True)
                arrays = {k: np.asarray(state[k]) for k in ("pca_eigen_vectors", "pca_means")}
        except (OSError, ValueError, KeyError, RuntimeError, zipfile.BadZipFile, pickle.UnpicklingError) as exc:
            raise VtagError(f"{path}: not a VGGish PCA parameter file ({exc.__class__.__name__}: {exc}); "
                            f"run `vtag weights pull {VGGISH_PCA_NPZ_FILE}`") from None
        return cls(arrays["pca_eigen_vectors"], arrays["pca_means"], source=str(path))

    @classmethod
    def random(cls, seed: int = 0) -> "VGGishPCA":
        rng = np.random.default_rng(seed)
        return cls(_random_orthonormal(AUDIO_DIM, rng), rng.normal(0.0, 0.5, AUDIO_DIM), source="random")

    def __call__(self, embeddings: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """[..., 128] -> [..., 128] float32."""
        if isinstance(embeddings, torch.Tensor):
            vectors = torch.from_numpy(self.eigen_vectors).to(embeddings.device)
            means = torch.from_numpy(self.means).to(embeddings.device)
            return ((embeddings.to(torch.float64) - means) @ vectors.T).to(torch.float32)
        x = np.asarray(embeddings, dtype=np.float64)
        return ((x - self.means) @ self.eigen_vectors.T).astype(np.float32)


def quantize(features: np.ndarray, mode: str = "round") -> np.ndarray:
    """Float features -> uint8 codes over [-2, 2].

    "round" is YouTube-8M's quantizer: `(clip(x) + 2) * 63.75` in float32, rounded half away from
    zero as Python 2's `round` did (`vtag.io.records.quantize_floats`); "truncate" is AudioSet's VGGish
    postprocessor (`astype(uint8)`), on average half a step lower.
    """
    if mode == "round":
        from vtag.io.records import quantize_floats

        return quantize_floats(features)
    scaled = (np.clip(np.asarray(features, dtype=np.float64), QUANT_MIN, QUANT_MAX) - QUANT_MIN) * (
        255.0 / (QUANT_MAX - QUANT_MIN))
    if mode == "truncate":
        return scaled.astype(np.uint8)
    raise ValueError(f"quantize mode must be 'round' or 'truncate', not {mode!r}")


def dequantize(codes: np.ndarray) -> np.ndarray:
    """uint8 codes -> float32, as the starter code's `utils.Dequantize`: q * 4/255 + 4/512 - 2."""
    scalar = (QUANT_MAX - QUANT_MIN) / 255.0
    bias = (QUANT_MAX - QUANT_MIN) / 512.0 + QUANT_MIN
    return (np.asarray(codes, dtype=np.float32) * np.float32(scalar) + np.float32(bias)).astype(np.float32)


def load_yt8m_pca(random_weights: bool = False, seed: int = 0) -> YT8MPCA:
    if random_weights:
        return YT8MPCA.random(seed)
    from vtag.weights import weight_path

    return YT8MPCA.from_dir(weight_path(YT8M_PCA_FILE))


def load_vggish_pca(random_weights: bool = False, seed: int = 0) -> VGGishPCA:
    """A user's own unverified npz if imported, else AudioSet's npz when present, else torchvggish's .pth
    (its repackaging of the same arrays)."""
    if random_weights:
        return VGGishPCA.random(seed)
    from vtag.io.user_weights import user_file_in_use
    from vtag.weights import weight_path

    path = (user_file_in_use("vggish_pca") or weight_path(VGGISH_PCA_NPZ_FILE, required=False)
            or weight_path(VGGISH_PCA_TORCH_FILE, required=False))
    if path is None:
        weight_path(VGGISH_PCA_NPZ_FILE)  # raises the standard "missing weight file" error
    return VGGishPCA.from_file(path)
