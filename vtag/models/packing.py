"""Weights stored in fewer bits: int8 with a scale per row, int4 with a float16 scale per 64 weights.

`quantise_state` is what `save_model` writes for `--save-dtype int8|int4`; `dequantise_state` undoes it
on load, so every model loads back as float32. The NumPy runtime (vtag.models.numpy_runtime) unpacks
the same formats with `dequantise_array`, so this module needs PyTorch only when torch tensors are
packed or unpacked: the import is inside those functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


INT8_SCALE = ".int8_scale"
INT4_SCALE = ".int4_scale"
INT4_GROUP = 64  # weights sharing one scale along a row: per-row 4-bit scales lose too much


def _is_weight_matrix(key: str, value: torch.Tensor) -> bool:
    # the big Linear weights; the memory's int8 keys and small tensors keep their own precision
    return value.is_floating_point() and value.ndim == 2 and value.numel() >= 4096 and not key.startswith("memory.")


def pack_int4(values: torch.Tensor) -> torch.Tensor:
    """Integers in [-7, 7], [N, D] -> uint8 [N, ceil(D / 2)]: two a byte, each + 8 (so 1..15), low
    nibble first; an odd last column is padded with a zero."""
    import torch

    stored = (values + 8).to(torch.uint8)
    if stored.shape[1] % 2:
        stored = torch.cat([stored, torch.full((len(stored), 1), 8, dtype=torch.uint8)], dim=1)
    return stored[:, 0::2] | (stored[:, 1::2] << 4)


def unpack_int4(packed: torch.Tensor, columns: int) -> torch.Tensor:
    """`pack_int4` undone: int8 [N, columns]."""
    import torch

    low, high = (packed & 0xF).to(torch.int8) - 8, (packed >> 4).to(torch.int8) - 8
    return torch.stack([low, high], dim=-1).flatten(1)[:, :columns]


def _int4(value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the weights at 4 bits, packed by `pack_int4`; a float16 scale per group of 64 along a row)."""
    import torch

    rows, cols = value.shape
    groups = value.float().view(rows, cols // INT4_GROUP, INT4_GROUP)
    scale = (groups.abs().amax(-1, keepdim=True).clamp_min(1e-12) / 7).half()
    return pack_int4(torch.round(groups / scale.float()).clamp(-7, 7).view(rows, cols)), scale.squeeze(-1)


def _from_int4(packed: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    values = unpack_int4(packed, 2 * packed.shape[1]).float()
    rows, cols = values.shape
    return (values.view(rows, cols // INT4_GROUP, INT4_GROUP) * scale.float()[..., None]).view(rows, cols)


def dequantise_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        if key.endswith((INT8_SCALE, INT4_SCALE)):
            continue
        if key + INT8_SCALE in state:
            out[key] = value.float() * state[key + INT8_SCALE].float()[:, None]
        elif key + INT4_SCALE in state:
            out[key] = _from_int4(value, state[key + INT4_SCALE])
        else:
            out[key] = value.float() if value.is_floating_point() else value
    return out


def quantise_state(state: dict[str, torch.Tensor], quantised: str | None, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The tensors to store: weight matrices at `quantised` ("int8" | "int4" | None) bits, everything
    else (and int4 matrices whose rows do not split into groups of 64) as `dtype`."""
    import torch

    tensors = {}
    for key, value in state.items():
        value = value.detach().cpu()
        if quantised == "int4" and _is_weight_matrix(key, value) and value.shape[1] % INT4_GROUP == 0:
            tensors[key], tensors[key + INT4_SCALE] = _int4(value)
        elif quantised and _is_weight_matrix(key, value):
            scale = value.float().abs().amax(dim=1).clamp_min(1e-12) / 127
            tensors[key] = torch.round(value.float() / scale[:, None]).clamp(-127, 127).to(torch.int8)
            tensors[key + INT8_SCALE] = scale
        else:
            tensors[key] = (value.to(dtype) if value.is_floating_point() else value).contiguous()
    return tensors


# ---- the same formats in NumPy (vtag.models.numpy_runtime) -----------------------------------------

# byte -> its two 4-bit values (low nibble first) as two int8 bytes of one uint16 (little-endian): one
# flat table lookup unpacks a whole matrix, 4x faster here than a [256, 2] table or shifts and masks
_NIBBLE_PAIRS = (((np.arange(256) & 0xF) - 8).astype(np.uint8).astype(np.uint16)
                 | (((np.arange(256) >> 4) - 8).astype(np.uint8).astype(np.uint16) << 8)).astype("<u2")


def unpack_int4_array(packed: np.ndarray, columns: int, pairs: np.ndarray | None = None) -> np.ndarray:
    """`unpack_int4` in NumPy: int8 [N, columns]. `pairs`: a uint16 array of `packed`'s shape to reuse."""
    return np.take(_NIBBLE_PAIRS, packed, out=pairs).view(np.int8).reshape(len(packed), -1)[:, :columns]


def dequantise_array(key: str, state: dict[str, np.ndarray], out: np.ndarray | None = None,
                     pairs: np.ndarray | None = None) -> np.ndarray:
    """The float32 tensor `key` of a stored state (NumPy arrays as read from model.safetensors), as
    `dequantise_state` makes it: the same float32 products, so the weights are bit-identical. `out`
    (float32, the tensor's shape) and `pairs` (see `unpack_int4_array`) are buffers to reuse."""
    value = state[key]
    if key + INT8_SCALE in state:
        return np.multiply(value, state[key + INT8_SCALE].astype(np.float32)[:, None], dtype=np.float32, out=out)
    if key + INT4_SCALE in state:
        rows, cols = value.shape[0], 2 * value.shape[1]
        groups = (rows, cols // INT4_GROUP, INT4_GROUP)
        values = unpack_int4_array(value, cols, pairs).reshape(groups)
        scale = state[key + INT4_SCALE].astype(np.float32)[..., None]
        return np.multiply(values, scale, dtype=np.float32, out=None if out is None else out.reshape(groups)).reshape(rows, cols)
    if value.dtype.kind != "f" or value.dtype == np.float32:
        return value
    if out is None:
        return value.astype(np.float32)
    out[...] = value
    return out
