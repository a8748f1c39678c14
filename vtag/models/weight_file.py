"""What a model's `model.safetensors` must hold for its config, checked before anything is built.
(The checks of the file itself, which need no PyTorch, are in vtag.models.weight_header.)

A config is only a handful of numbers, and a corrupt or hostile one (`hidden` 10^9) would have
`build_model` allocate without bound before a single weight is looked at. So the tensors the config
implies are worked out on the meta device (nothing allocated), bounded, and compared with the shapes
and dtypes in the file's header (read without loading the data); only a file that holds exactly those
tensors is loaded, and its values must then be finite. The header's offsets are checked against the
file's size by safetensors itself, so a model that passes is never larger than the bytes on disk imply.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vtag.errors import VtagError
from vtag.models.registry import ModelConfig, build_model
from vtag.models.weight_header import MAX_WEIGHTS, check_finite, check_header

__all__ = ["MAX_WEIGHTS", "check_header", "check_values", "expected_tensors"]

_HEADER_DTYPES = {torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
                  torch.bool: "BOOL"}


def expected_tensors(config: ModelConfig, source: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """name -> (shape, header dtype: "F32" for any float, else "I32", "U8"...) of every tensor the model
    of `config` holds; nothing is allocated.
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
    return {key: (tuple(t.shape), "F32" if t.dtype.is_floating_point else _HEADER_DTYPES.get(t.dtype, str(t.dtype)))
            for key, t in state.items()}


def check_values(path: Path, state: dict[str, torch.Tensor]) -> None:
    """Raises VtagError naming the first floating tensor that holds NaN or infinity. In numpy: torch's
    CPU kernels for float16 are ~50x slower here (a second for the shipped model)."""
    check_finite(path, {key: (t.float() if t.dtype == torch.bfloat16 else t).numpy()
                        for key, t in state.items() if t.is_floating_point()})
