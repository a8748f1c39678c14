"""Reading a head model's shared tensors from its trunk's file (see vtag.models.heads)."""

from __future__ import annotations

from pathlib import Path

import torch

from vtag.errors import VtagError
from vtag.models.packing import INT4_SCALE, INT8_SCALE

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


def trunk_tensors(path: Path, own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The stored tensors a head model takes from its trunk's file: all but those the head holds
    itself (with their quantisation scales), as stored there."""
    stored = read_tensor_file(path)
    own_bases = {_base(k) for k in own}
    return {k: v for k, v in stored.items() if _base(k) not in own_bases}
