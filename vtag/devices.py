"""Which device computation runs on: shared by extraction (features) and the models."""

from __future__ import annotations

import torch

from vtag.errors import VtagError


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' where a GPU is visible, else 'cpu'; anything else is checked, so a missing GPU
    or a typo is a one-line error instead of a CUDA traceback."""
    name = str(device)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not (name == "cpu" or name == "cuda" or name.startswith("cuda:")):
        raise VtagError(f"unknown device '{name}': use auto, cpu or cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VtagError(f"--device {name} asked for, but no CUDA GPU is available here: use --device cpu")
    return name
