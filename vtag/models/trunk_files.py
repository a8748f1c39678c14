"""Reading a head model's shared tensors from its trunk's file (see vtag.models.heads); as torch
tensors or, for the NumPy runtime, as NumPy arrays (so PyTorch is imported only for the former)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from vtag.errors import VtagError
from vtag.models.packing import INT4_SCALE, INT8_SCALE

if TYPE_CHECKING:
    import numpy as np
    import torch

# the trunk's tensors a head model replaces: every network's classifier and the memory's labels
OWN_SUFFIXES = ("classifier.weight", "classifier.bias")
OWN_MEMORY = ("memory.label_offsets", "memory.label_values")


def _base(key: str) -> str:
    return key.removesuffix(INT4_SCALE).removesuffix(INT8_SCALE)


def is_own(key: str) -> bool:
    """Whether a head model stores this tensor itself rather than taking it from its trunk."""
    base = _base(key)
    return base.endswith(OWN_SUFFIXES) or base in OWN_MEMORY


def read_tensor_file(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file (no unpickling), or one line saying the file is damaged."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise VtagError(f"{path}: not a readable safetensors file ({exc}); the file is corrupt or truncated") from None


def read_array_file(path: Path) -> dict[str, np.ndarray]:
    """`read_tensor_file` as NumPy arrays, without PyTorch. bfloat16, which NumPy lacks, is refused
    with `Unsupported` (the caller falls back to PyTorch)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    from vtag.models.weight_header import tensor_header

    # Decided from the header, not from load_file's error: with ml_dtypes imported (onnx does),
    # load_file would hand back bfloat16 arrays that this runtime never checked its sums against.
    if any(dtype == "BF16" for _, dtype in tensor_header(path).values()):
        raise Unsupported(f"{path}: bfloat16 tensors")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as exc:
        if "bf16" in str(exc).lower() or "bfloat16" in str(exc).lower():
            raise Unsupported(f"{path}: bfloat16 tensors") from None
        raise VtagError(f"{path}: not a readable safetensors file ({exc}); the file is corrupt or truncated") from None


class Unsupported(Exception):
    """What the NumPy runtime cannot run (the PyTorch path can): the caller falls back to it."""


def file_sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def trunk_file(config_path: Path, trunk: object, weights_file: str, trunk_sha256: object = None) -> Path:
    """The trunk's weights file a head model's config names. A head is fitted to one trunk's features:
    `trunk_sha256` (recorded when it was fitted) refuses any other."""
    if not isinstance(trunk, str) or not trunk:
        raise VtagError(f"{config_path}: \"trunk\" must name the folder the model shares tensors with")
    path = config_path.parent / trunk / weights_file
    if not path.is_file():
        raise VtagError(f"{config_path}: its trunk {path} is missing; keep the two model folders side by side")
    if isinstance(trunk_sha256, str) and file_sha256(path) != trunk_sha256:
        raise VtagError(f"{config_path}: its trunk {path} has changed since the head was fitted (sha256 differs); "
                        "fit the head again with `vtag transfer`")
    return path


def trunk_tensors(path: Path, own: dict, read: Callable[[Path], dict] = read_tensor_file) -> dict:
    """The stored tensors a head model takes from its trunk's file: all but those the head holds
    itself (with their quantisation scales), as stored there (`read`: as torch tensors or arrays)."""
    stored = read(path)
    own_bases = {_base(k) for k in own}
    return {k: v for k, v in stored.items() if _base(k) not in own_bases}


def read_checked_state(config_path: Path, weights_path: Path, meta: dict, expected: dict, weights_file: str,
                       read: Callable[[Path], dict] = read_tensor_file) -> dict:
    """A model folder's stored tensors (`read`: as torch tensors or arrays), every file's header checked
    against `expected` first; a head model's trunk tensors come from its trunk's (sha256-checked) file."""
    from vtag.models.weight_header import check_header

    if "trunk" not in meta:
        check_header(weights_path, expected, config_path.name)
        return read(weights_path)
    trunk_path = trunk_file(config_path, meta["trunk"], weights_file, meta.get("trunk_sha256"))
    check_header(weights_path, {k: v for k, v in expected.items() if is_own(k)}, config_path.name)
    check_header(trunk_path, {k: v for k, v in expected.items() if not is_own(k)}, config_path.name, ignore=is_own)
    state = read(weights_path)
    return {**trunk_tensors(trunk_path, state, read=read), **state}
