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


def fewer_blas_threads_when_busy() -> None:
    """One NumPy BLAS thread where the CPUs are already busy (1-minute load average at least the CPUs
    this process may use), unless the user set OPENBLAS_NUM_THREADS: a matrix product split across
    threads waits for its slowest, and on a busy machine one of them is always waiting for a core
    (the shipped model's 293-video shard: 3.9 s instead of 5.5 s at load 5.5 on 2 cores). Only takes
    effect if called before NumPy is first imported; PyTorch's threads are its own."""
    if "numpy" in sys.modules or "OPENBLAS_NUM_THREADS" in os.environ:
        return
    try:
        cpus = len(os.sched_getaffinity(0))
        busy = os.getloadavg()[0] >= cpus
    except (AttributeError, OSError):  # no load average (Windows): leave BLAS as it is
        return
    if busy:
        os.environ["OPENBLAS_NUM_THREADS"] = "1"
