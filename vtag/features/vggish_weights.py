"""Where VGGish's weights come from: AudioSet's own TF checkpoint, torchvggish's port, or a user's
own (unverified) file, and which role a file to import plays.

AudioSet's `vggish_slim.py` builds, under the variable scope `vggish`: 3x3 SAME convs `conv1` (64),
`conv2` (128), `conv3/conv3_1`, `conv3/conv3_2` (256), `conv4/conv4_1`, `conv4/conv4_2` (512), each
followed (per block) by a 2x2/2 max pool; then it flattens the NHWC map [6, 4, 512] and applies
`fc1/fc1_1`, `fc1/fc1_2` (4096, ReLU) and `fc2` (128, no activation). Each layer has `weights`
(conv: HWIO [3, 3, in, out]; fc: [in, out]) and `biases`. vtag's `VGGish` flattens in the same NHWC
order, so the fc matrices only need transposing; conv kernels go HWIO -> OIHW.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vtag.errors import VtagError
from vtag.features.tf_checkpoint import CheckpointReader, is_v1_checkpoint


OFFICIAL_CHECKPOINT = "vggish_model.ckpt"
TORCH_PORT = "vggish-10086976.pth"
ROLE_NETWORK = "vggish"
ROLE_PCA = "vggish_pca"

# TF scope -> vtag VGGish parameter prefix, with the TF weight shape.
_LAYERS: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("vggish/conv1", "features.0", (3, 3, 1, 64)),
    ("vggish/conv2", "features.3", (3, 3, 64, 128)),
    ("vggish/conv3/conv3_1", "features.6", (3, 3, 128, 256)),
    ("vggish/conv3/conv3_2", "features.8", (3, 3, 256, 256)),
    ("vggish/conv4/conv4_1", "features.11", (3, 3, 256, 512)),
    ("vggish/conv4/conv4_2", "features.13", (3, 3, 512, 512)),
    ("vggish/fc1/fc1_1", "embeddings.0", (512 * 6 * 4, 4096)),
    ("vggish/fc1/fc1_2", "embeddings.2", (4096, 4096)),
    ("vggish/fc2", "embeddings.4", (4096, 128)),
)
CHECKPOINT_SHAPES: dict[str, tuple[int, ...]] = {}
for _scope, _, _shape in _LAYERS:
    CHECKPOINT_SHAPES[f"{_scope}/weights"] = _shape
    CHECKPOINT_SHAPES[f"{_scope}/biases"] = (_shape[-1],)


def _torch_shape(tf_shape: tuple[int, ...]) -> tuple[int, ...]:
    return (tf_shape[3], tf_shape[2], tf_shape[0], tf_shape[1]) if len(tf_shape) == 4 else tf_shape[::-1]


TORCH_SHAPES: dict[str, tuple[int, ...]] = {}
for _scope, _prefix, _shape in _LAYERS:
    TORCH_SHAPES[f"{_prefix}.weight"] = _torch_shape(_shape)
    TORCH_SHAPES[f"{_prefix}.bias"] = (_shape[-1],)


def _check_checkpoint_layout(reader: CheckpointReader) -> None:
    problems = []
    for name, shape in CHECKPOINT_SHAPES.items():
        info = reader.tensors.get(name)
        if info is None:
            problems.append(f"no {name}")
        elif info.shape != shape or info.dtype != "float32":
            problems.append(f"{name} is {info.dtype} {list(info.shape)}, expected float32 {list(shape)}")
    if problems:
        raise VtagError(f"{reader.path}: not a VGGish checkpoint with AudioSet's variable names "
                        f"({'; '.join(problems[:3])}{'; ...' if len(problems) > 3 else ''})")


def tf_kernel_to_torch(kernel: np.ndarray) -> np.ndarray:
    """TF conv HWIO -> torch OIHW; TF dense [in, out] -> torch Linear [out, in]."""
    return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1) if kernel.ndim == 4 else kernel.T)


def state_from_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A TF V1 checkpoint with AudioSet's VGGish variables -> a state dict for `vtag.vggish.VGGish`."""
    with CheckpointReader(path) as reader:
        _check_checkpoint_layout(reader)
        arrays = reader.read(list(CHECKPOINT_SHAPES))
    state = {}
    for scope, prefix, _ in _LAYERS:
        state[f"{prefix}.weight"] = torch.from_numpy(tf_kernel_to_torch(arrays.pop(f"{scope}/weights")))
        state[f"{prefix}.bias"] = torch.from_numpy(arrays.pop(f"{scope}/biases"))
    return state


def _torch_state(path: Path) -> dict[str, torch.Tensor]:
    """A torchvggish-layout state dict from .safetensors or a weights-only torch file."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch and safetensors raise many kinds for a bad file
        raise VtagError(f"{path}: not a readable weights file ({exc.__class__.__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise VtagError(f"{path}: not a state dict of tensors")
    return state


def _check_torch_layout(state: dict, path: Path) -> None:
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got != TORCH_SHAPES:
        wrong = [k for k in TORCH_SHAPES if got.get(k) != TORCH_SHAPES[k]] + [k for k in got if k not in TORCH_SHAPES]
        raise VtagError(f"{path}: not a VGGish state dict in torchvggish's layout "
                        f"(differs at {', '.join(wrong[:3])}{', ...' if len(wrong) > 3 else ''})")


def load_network_state(path: str | Path) -> dict[str, torch.Tensor]:
    """VGGish weights from any supported file: a TF V1 checkpoint or a torchvggish-layout state dict."""
    path = Path(path)
    if is_v1_checkpoint(path) or path.suffix == ".ckpt":
        return state_from_checkpoint(path)
    state = _torch_state(path)
    _check_torch_layout(state, path)
    return {k: v.to(torch.float32) for k, v in state.items()}


def network_weights_path() -> Path:
    """The file VGGish loads: the user's own unverified import (with a warning), else AudioSet's
    checkpoint when present and verified, else torchvggish's port; missing: the standard error."""
    from vtag.io.user_weights import user_file_in_use
    from vtag.weights import weight_path

    user = user_file_in_use(ROLE_NETWORK)
    if user is not None:
        return user
    found = weight_path(OFFICIAL_CHECKPOINT, required=False) or weight_path(TORCH_PORT, required=False)
    return found if found is not None else weight_path(OFFICIAL_CHECKPOINT)


@dataclass(frozen=True)
class Role:
    """What an imported file is used for, and how vtag recognised it."""

    role: str
    fmt: str
    suffix: str
    description: str


def identify(path: str | Path) -> Role:
    """Which role a user's weights file can take, by its format and the shapes inside it."""
    path = Path(path)
    if not path.is_file():
        raise VtagError(f"{path}: no such file to import")
    if is_v1_checkpoint(path) or path.suffix == ".ckpt":
        with CheckpointReader(path) as reader:
            _check_checkpoint_layout(reader)
        return Role(ROLE_NETWORK, "tf-v1-checkpoint", ".ckpt",
                    "VGGish network (TF V1 checkpoint with AudioSet's variable names and shapes)")
    if path.suffix == ".npz":
        from vtag.features.pca import VGGishPCA

        VGGishPCA.from_file(path)  # shapes checked; pickled arrays refused
        return Role(ROLE_PCA, "npz", ".npz", "VGGish PCA (pca_eigen_vectors [128, 128], pca_means [128])")
    if path.suffix in (".pth", ".pt", ".safetensors"):
        state = _torch_state(path)
        _check_torch_layout(state, path)
        fmt = "safetensors" if path.suffix == ".safetensors" else "torch"
        return Role(ROLE_NETWORK, fmt, path.suffix,
                    f"VGGish network ({fmt} state dict in torchvggish's layout)")
    raise VtagError(f"{path}: vtag can import as unverified a VGGish network (TF V1 checkpoint, .pth or "
                    f".safetensors in torchvggish's layout) or a VGGish PCA .npz; this is none of them")


def import_unverified(path: str | Path) -> tuple[Role, Path]:
    """Install a user's own VGGish weights or PCA, checked for layout but not for provenance."""
    from vtag.io.user_weights import install_unverified

    role = identify(path)
    return role, install_unverified(Path(path), role.role, role.suffix, role.description)
