"""What a model's `model.safetensors` must hold for its config, checked before anything is built.

A config is only a handful of numbers, and a corrupt or hostile one (`hidden` 10^9) would have
`build_model` allocate without bound before a single weight is looked at. So the tensors the config
implies are worked out on the meta device (nothing allocated), bounded, and compared with the shapes
and dtypes in the file's header (read without loading the data); only a file that holds exactly those
tensors is loaded, and its values must then be finite. The header's offsets are checked against the
file's size by safetensors itself, so a model that passes is never larger than the bytes on disk imply.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from vtag.errors import VtagError
from vtag.models.packing import INT4_GROUP, INT4_SCALE, INT8_SCALE
from vtag.models.registry import ModelConfig, build_model

# Four times the largest model here (the paper's 416M-weight baseline as a 5-member ensemble, 2.1G):
# beyond it a config is corruption, not a model anyone trained.
MAX_WEIGHTS = 8_000_000_000
FLOATS = {"F32", "F16", "BF16"}  # what save_model writes for floating tensors
_NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64", "I32": "int32",
          "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}
_HEADER_DTYPES = {torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
                  torch.bool: "BOOL"}


def expected_tensors(config: ModelConfig, source: str) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """name -> (shape, dtype) of every tensor the model of `config` holds; nothing is allocated.
    Raises VtagError when the sizes cannot be built or would need more than MAX_WEIGHTS."""
    try:
        with torch.device("meta"):
            state = build_model(config).state_dict()
    except (RuntimeError, ValueError, OverflowError, TypeError, MemoryError) as exc:
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise VtagError(f"{source}: these model sizes cannot be built ({detail}); the config is corrupt: "
                        "restore it from the run that wrote it") from None
    total = sum(t.numel() for t in state.values())
    if total > MAX_WEIGHTS:
        raise VtagError(f"{source}: the settings ask for {total:,} weights ({4 * total / 1e9:,.0f} GB as float32), "
                        f"far more than any vtag model; the config is corrupt: restore it from the run that wrote it")
    return {key: (tuple(t.shape), t.dtype) for key, t in state.items()}


def _header(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return {key: (tuple(f.get_slice(key).get_shape()), f.get_slice(key).get_dtype()) for key in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise VtagError(f"{path}: not a readable safetensors file ({exc}); the file is corrupt or truncated") from None


def _describe(dtype: str, shape: tuple[int, ...]) -> str:
    return f"{_NAMES.get(dtype, dtype)} {list(shape)}"


def check_header(path: Path, expected: dict[str, tuple[tuple[int, ...], torch.dtype]], config_name: str,
                 ignore: Callable[[str], bool] | None = None) -> None:
    """Raises VtagError naming the first tensor of the file at `path` that is missing, extra, or of
    another shape or dtype than the model needs (int8 / int4 packed matrices as save_model packs them).
    Tensors `ignore` accepts may be there (a trunk's own classifiers, which a head model replaces)."""
    header = _header(path)
    mismatch = f": the weights do not match the model in {config_name} (not from the same run?)"
    used: set[str] = set()
    for key, (shape, dtype) in expected.items():
        if key not in header:
            raise VtagError(f"{path}: no tensor '{key}'{mismatch}")
        got_shape, got = header[key]
        used.add(key)
        wants = []  # (name, header dtype(s) allowed, shape) of what must be there
        if key + INT8_SCALE in header and dtype.is_floating_point and len(shape) == 2:
            wants = [(key, {"I8"}, shape), (key + INT8_SCALE, FLOATS, shape[:1])]
        elif key + INT4_SCALE in header and dtype.is_floating_point and len(shape) == 2 and shape[1] % INT4_GROUP == 0:
            wants = [(key, {"U8"}, (shape[0], shape[1] // 2)),
                     (key + INT4_SCALE, FLOATS, (shape[0], shape[1] // INT4_GROUP))]
        else:
            wants = [(key, FLOATS if dtype.is_floating_point else {_HEADER_DTYPES.get(dtype, str(dtype))}, shape)]
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


def check_values(path: Path, state: dict[str, torch.Tensor]) -> None:
    """Raises VtagError naming the first floating tensor that holds NaN or infinity. In numpy: torch's
    CPU kernels for float16 are ~50x slower here (a second for the shipped model)."""
    import numpy as np

    for key, tensor in state.items():
        if not tensor.is_floating_point() or not tensor.numel():
            continue
        values = (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
        if not np.isfinite(values).all():
            what = "NaN" if np.isnan(values).any() else "infinity"
            raise VtagError(f"{path}: tensor '{key}' holds {what}; the file is corrupt: restore it from the run "
                            "that wrote it")
