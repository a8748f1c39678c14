"""Which device computation runs on: shared by extraction (features) and the models."""

from __future__ import annotations

import os
import sys

from vtag.errors import VtagError


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' where a GPU is visible, else 'cpu'; anything else is checked, so a missing GPU
    or a typo is a one-line error instead of a CUDA traceback."""
    import torch

    name = str(device)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not (name == "cpu" or name == "cuda" or name.startswith("cuda:")):
        raise VtagError(f"unknown device '{name}': use auto, cpu or cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VtagError(f"--device {name} asked for, but no CUDA GPU is available here: use --device cpu")
    return name


def surely_cpu(device: str = "auto") -> bool:
    """Whether `resolve_device(device)` would give "cpu", told without importing PyTorch (seconds):
    "cpu", or "auto" where no GPU can be visible (no NVIDIA or AMD GPU device nodes on Linux, or
    CUDA_VISIBLE_DEVICES empty; macOS has no CUDA). False where only PyTorch can tell."""
    name = str(device)
    if name == "cpu":
        return True
    if name != "auto":
        return False
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return True
    if sys.platform == "darwin":
        return True
    if sys.platform.startswith("linux"):
        return not (os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/nvidia0") or os.path.exists("/dev/kfd"))
    return False
