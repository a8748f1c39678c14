"""A model.safetensors checked against what its config implies, and for finite values, without
PyTorch: its header is read (not its data) and compared tensor by tensor with the expected shapes and
dtypes. Shared by `load_model` (the expected tensors from a meta-device build, vtag.models.weight_file)
and the NumPy runtime (vtag.models.numpy_runtime, which works them out for the models it runs).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from vtag.errors import VtagError
from vtag.models.packing import INT4_GROUP, INT4_SCALE, INT8_SCALE

# Four times the largest model here (the paper's 416M-weight baseline as a 5-member ensemble, 2.1G):
# beyond it a config is corruption, not a model anyone trained.
MAX_WEIGHTS = 8_000_000_000
FLOATS = {"F32", "F16", "BF16"}  # what save_model writes for floating tensors
_NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64", "I32": "int32",
          "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def tensor_header(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """{name: (shape, safetensors dtype name)} read from the header alone."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "np") as f:
            return {key: (tuple(f.get_slice(key).get_shape()), f.get_slice(key).get_dtype()) for key in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise VtagError(f"{path}: not a readable safetensors file ({exc}); the file is corrupt or truncated") from None


def _describe(dtype: str, shape: tuple[int, ...]) -> str:
    return f"{_NAMES.get(dtype, dtype)} {list(shape)}"


def check_header(path: Path, expected: dict[str, tuple[tuple[int, ...], str]], config_name: str,
                 ignore: Callable[[str], bool] | None = None) -> None:
    """Raises VtagError naming the first tensor of the file at `path` that is missing, extra, or of
    another shape or dtype than the model needs (int8 / int4 packed matrices as save_model packs them).
    `expected`: name -> (shape, header dtype), any float dtype standing for all three.
    Tensors `ignore` accepts may be there (a trunk's own classifiers, which a head model replaces)."""
    header = tensor_header(path)
    mismatch = f": the weights do not match the model in {config_name} (not from the same run?)"
    used: set[str] = set()
    for key, (shape, dtype) in expected.items():
        if key not in header:
            raise VtagError(f"{path}: no tensor '{key}'{mismatch}")
        got_shape, got = header[key]
        used.add(key)
        floating = dtype in FLOATS
        wants = []  # (name, header dtype(s) allowed, shape) of what must be there
        if key + INT8_SCALE in header and floating and len(shape) == 2:
            wants = [(key, {"I8"}, shape), (key + INT8_SCALE, FLOATS, shape[:1])]
        elif key + INT4_SCALE in header and floating and len(shape) == 2 and shape[1] % INT4_GROUP == 0:
            wants = [(key, {"U8"}, (shape[0], shape[1] // 2)),
                     (key + INT4_SCALE, FLOATS, (shape[0], shape[1] // INT4_GROUP))]
        else:
            wants = [(key, FLOATS if floating else {dtype}, shape)]
        for name, allowed, want_shape in wants:
            used.add(name)
            have_shape, have = header[name]
            if have not in allowed or have_shape != want_shape:
                need = "float32/float16/bfloat16" if allowed == FLOATS else "/".join(_NAMES.get(d, d) for d in allowed)
                raise VtagError(f"{path}: tensor '{name}' is {_describe(have, have_shape)} where {need} "
                                f"{list(want_shape)} belongs{mismatch}")
    extra = sorted(k for k in set(header) - used if not (ignore and ignore(k)))
    if extra:
        raise VtagError(f"{path}: tensor '{extra[0]}' ({len(extra)} such) belongs to no part of the model"
                        f"{mismatch}")


def check_finite(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Raises VtagError naming the first floating array that holds NaN or infinity."""
    for key, values in arrays.items():
        if values.dtype.kind != "f" or not values.size:
            continue
        if not np.isfinite(values).all():
            what = "NaN" if np.isnan(values).any() else "infinity"
            raise VtagError(f"{path}: tensor '{key}' holds {what}; the file is corrupt: restore it from the run "
                            "that wrote it")
