"""`vtag memory`: a copy of a trained model with a neighbour memory of labelled video-level records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vtag.errors import VtagError
from vtag.io.fast_reader import read_video_level_arrays
from vtag.io.paths import expand_paths
from vtag.models.attach import attach_memory
from vtag.models.storage import save_model
from vtag.tasks.evaluate import load_for_evaluation


def remember(records, out: str | Path, model=None, dim: int = 1024, bits: int = 4, save_dtype: str = "int8", skip_bad: bool = False,
             **settings: Any) -> Path:
    """Writes into `out` a copy of `model` (a model folder or run name; default: the shipped model) with a
    neighbour memory of the labelled video-level `records`, and returns `out`. `settings` override
    DEFAULTS. The model's own weights are not changed; a memory it already had is replaced."""
    from vtag.tasks.vocab_match import records_vocabulary, require_vocabulary

    paths = expand_paths(records)
    if not paths:
        raise VtagError(f"no record files match {records!r}: give .tfrecord files, folders or globs")
    found = records_vocabulary(paths, skip_bad=skip_bad)  # before reading labels the model may not have
    net, meta, directory = load_for_evaluation(model, "cpu", vocabulary=found)
    require_vocabulary(meta, directory, found, ", ".join(map(str, paths[:3])))
    arrays = read_video_level_arrays(paths, skip_bad=skip_bad, num_classes=net.config.num_classes)
    hybrid = attach_memory(net, arrays.rgb, arrays.audio, arrays.labels, dim=dim, bits=bits, **settings)
    kept = {k: v for k, v in meta.items() if k not in ("format", "name", "model", "weights_dtype", "trunk")}
    given = [str(r) for r in ([records] if isinstance(records, (str, Path)) else records)]
    kept["memory_of"] = {"records": given, "files": len(paths), "videos": hybrid.config.memory["videos"],
                         "base_model": str(directory)}
    return save_model(hybrid, out, extra=kept, dtype=save_dtype)
