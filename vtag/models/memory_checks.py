"""A neighbour memory's settings and label table checked, without PyTorch: shared by the torch
model (vtag.models.memory) and the NumPy runtime (vtag.models.numpy_runtime)."""

from __future__ import annotations

from typing import Any

import numpy as np

from vtag.errors import VtagError

DEFAULTS = {"k": 30, "temperature": 0.05, "weight": 0.35, "epsilon": 0.003, "audio_weight": 0.5}
SHAPE_KEYS = ("videos", "dim", "labels", "input_dim", "bits")
BITS = (8, 4)


def check_settings(memory: Any, source: str) -> None:
    """Raises VtagError naming the bad memory setting; silent when the settings can be built."""
    if not isinstance(memory, dict):
        raise VtagError(f"{source}: memory must be an object of settings or null, got {type(memory).__name__}")
    known = set(SHAPE_KEYS) | set(DEFAULTS)
    unknown, missing = sorted(set(memory) - known), sorted(known - set(memory))
    if unknown or missing:
        raise VtagError(f"{source}: memory settings must be exactly {', '.join(sorted(known))}"
                        f" ({'unknown ' + ', '.join(unknown) if unknown else 'missing ' + ', '.join(missing)})")
    for key in SHAPE_KEYS + ("k",):
        value = memory[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise VtagError(f"{source}: memory {key} must be a positive integer, got {value!r}")
    if memory["bits"] not in BITS:
        raise VtagError(f"{source}: memory bits must be 8 or 4, got {memory['bits']!r}")
    for key, low, high in (("temperature", 0, float("inf")), ("weight", 0, 1), ("epsilon", 0, 1),
                           ("audio_weight", 0, float("inf"))):
        value = memory[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value <= high:
            raise VtagError(f"{source}: memory {key} must be in ({low}, {high}], got {value!r}")


def check_state(state: dict, num_classes: int, source: str) -> None:
    """Raises VtagError when the memory's label table in a loaded state dict (torch tensors or NumPy
    arrays) cannot be looked up as it stands: a label id outside 0..num_classes-1 (a negative one
    would silently index from the end and vote for another class; one too large is an IndexError at
    the first query), or offsets that do not run from 0 up to the number of labels."""
    values, offsets = state.get("memory.label_values"), state.get("memory.label_offsets")
    if values is None or offsets is None:
        return  # a missing buffer is named by the strict load
    values, offsets = np.asarray(values), np.asarray(offsets).astype(np.int64)
    fix = "the file is corrupt: rebuild the memory with `vtag memory`"
    if values.size:
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= num_classes:
            wrong = low if low < 0 else high
            raise VtagError(f"{source}: the memory holds label id {wrong}, outside the model's {num_classes} "
                            f"classes (0..{num_classes - 1}); {fix}")
    steps = offsets[1:] - offsets[:-1]
    if offsets.size and (int(offsets[0]) != 0 or int(offsets[-1]) != values.size or bool((steps < 0).any())):
        raise VtagError(f"{source}: the memory's label offsets do not run from 0 up to its {values.size} "
                        f"labels; {fix}")
