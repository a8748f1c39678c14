"""Training checkpoints: folders written beside their target and swapped in by rename, so a crash
leaves the old checkpoint or the new one, never half of one; optimizer state as safetensors."""

from __future__ import annotations

import glob
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

STATE_FILE = "state.json"
OPTIMIZER_FILE = "optimizer.safetensors"


def write_checkpoint(target: Path, write: Callable[[Path], None]) -> None:
    """Write a checkpoint folder next to `target`, then swap it in: a crash leaves the old or the new
    folder, never half of one (`target.old` is the fallback while the swap runs)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(tmp)
        old = target.with_name(target.name + ".old")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def link_model_files(source: Path, folder: Path) -> None:
    """`folder` gets the model files of checkpoint `source` (all but the optimizer and run state) as hard
    links where the file system allows, else as copies: best/ is last/ at the epoch it was best."""
    for path in source.iterdir():
        if path.name in (OPTIMIZER_FILE, STATE_FILE) or not path.is_file():
            continue
        try:
            os.link(path, folder / path.name)
        except OSError:
            shutil.copy2(path, folder / path.name)


def drop_resume_state(target: Path) -> None:
    """Swap checkpoint `target` for a plain model folder (its model files, linked): what a finished
    run keeps. Done as a checkpoint write, so a kill midway leaves the resumable folder or the plain
    one; the resumable one may then be `target.old` (killed between the two renames), hence the source
    is whichever find_checkpoint finds."""
    source = find_checkpoint(target.parent) if target.name == "last" else target
    if source is not None:
        write_checkpoint(target, lambda folder: link_model_files(source, folder))


def holds_model(out_dir: Path) -> bool:
    """A run folder whose last/ is a model, resumable or finished."""
    return find_checkpoint(out_dir) is not None or (out_dir / "last" / "config.json").is_file()


def remove_stale_temps(target: Path) -> None:
    """Remove the temp folders (`.last.k3j9x_0q`) that runs killed mid-save left beside `target`.
    One process saves a run's checkpoints (rank 0), so any such folder is an earlier run's; only names
    tempfile.mkdtemp makes for this target are touched."""
    pattern = re.compile(re.escape(f".{target.name}.") + r"[a-z0-9_]{8}")
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*"):
        if pattern.fullmatch(stale.name) and stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    state = optimizer.state_dict()
    tensors = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            value = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().contiguous()
    return tensors, state["param_groups"]


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list[dict]) -> None:
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            per_param.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": per_param, "param_groups": groups})


def find_checkpoint(out_dir: Path) -> Path | None:
    for candidate in (out_dir / "last", out_dir / "last.old"):
        if (candidate / STATE_FILE).is_file():
            return candidate
    return None
