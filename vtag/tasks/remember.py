"""`vtag memory`: a copy of a trained model with a neighbour memory of labelled video-level records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vtag.errors import VtagError
from vtag.io.fast_reader import read_video_level_arrays
from vtag.io.paths import expand_paths
from vtag.io.vocab import vocabulary_for
from vtag.models.attach import attach_memory
from vtag.models.storage import save_model
from vtag.tasks.evaluate import load_for_evaluation


def remember(records, out: str | Path, model=None, dim: int = 1024, bits: int = 4, save_dtype: str = "int8", skip_bad: bool = False,
             **settings: Any) -> Path:
    """Writes into `out` a copy of `model` (a model folder or run name; default: the shipped model) with a
    neighbour memory of the labelled video-level `records`, and returns `out`. `settings` override
    DEFAULTS. The model's own weights are not changed; a memory it already had is replaced."""
    net, meta, directory = load_for_evaluation(model, "cpu")
    paths = expand_paths(records)
    arrays = read_video_level_arrays(paths, skip_bad=skip_bad, num_classes=net.config.num_classes)
    model_vocabulary = meta.get("vocabulary")
    if model_vocabulary in ("2017", "2018") and len(arrays):
        labelled = [lab for lab in arrays.labels if lab is not None and len(lab)]
        largest = max(int(lab.max()) for lab in labelled) if labelled else None
        records_vocabulary = vocabulary_for(arrays.schema, largest)
        if records_vocabulary != model_vocabulary:
            raise VtagError(f"the records use the {records_vocabulary} vocabulary, the model ({directory}) the "
                            f"{model_vocabulary} one: their label numbers mean different classes")
    hybrid = attach_memory(net, arrays.rgb, arrays.audio, arrays.labels, dim=dim, bits=bits, **settings)
    kept = {k: v for k, v in meta.items() if k not in ("format", "name", "model", "weights_dtype")}
    given = [str(r) for r in ([records] if isinstance(records, (str, Path)) else records)]
    kept["memory_of"] = {"records": given, "files": len(paths), "videos": hybrid.config.memory["videos"],
                         "base_model": str(directory)}
    return save_model(hybrid, out, extra=kept, dtype=save_dtype)
