"""Model folders for tests, shared by the test modules."""

from __future__ import annotations

import json
from pathlib import Path


def model_copy(source: Path, tmp_path: Path, change=None, meta_change=None) -> Path:
    """A copy of the model folder `source` with its tensors (`change(state)`) or config
    (`meta_change(meta)`) altered, in tmp_path/model."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "model"
    folder.mkdir()
    state = load_file(source / "model.safetensors")
    if change is not None:
        change(state)
    save_file(state, folder / "model.safetensors")
    meta = json.loads((source / "config.json").read_text())
    if meta_change is not None:
        meta_change(meta)
    (folder / "config.json").write_text(json.dumps(meta))
    return folder
