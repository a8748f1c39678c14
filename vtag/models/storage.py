"""A model on disk: `config.json` (plain data: the settings under "model", plus vocabulary and metrics)
beside `model.safetensors`, written atomically, and loaded back as a torch model. Where a model name or
folder points, and reading its config.json, are in vtag.models.model_dirs (no PyTorch needed there)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from vtag.errors import VtagError
from vtag.io.atomic import atomic_write_bytes, atomic_write_json
from vtag.models.architectures import FusionModel
from vtag.models.model_dirs import (
    CONFIG_FILE, DEFAULT_MODEL_DIR, DEFAULT_MODEL_DIRS, FORMAT, WEIGHTS_FILE, model_files, require_weights,
    resolve_model_dir,
)
from vtag.models.packing import dequantise_state, quantise_state
from vtag.models.memory import check_state as check_memory_state
from vtag.models.registry import ModelConfig, build_model
from vtag.models.trunk_files import read_checked_state
from vtag.models.weight_file import check_values, expected_tensors

__all__ = ["CONFIG_FILE", "DEFAULT_MODEL_DIR", "DEFAULT_MODEL_DIRS", "FORMAT", "WEIGHTS_FILE", "load_model",
           "resolve_model_dir", "save_model"]


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP (`.module`) or torch.compile (`._orig_mod`) wrappers."""
    while not hasattr(model, "config"):
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            raise VtagError("save_model needs a vtag model (one with a .config); build it with create_model")
        model = inner
    return model


_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
           "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def save_model(model: nn.Module, directory: str | Path, extra: dict | None = None,
               dtype: str | torch.dtype = torch.float32) -> Path:
    """Writes `model.safetensors` and `config.json` (settings under "model", plus `extra`, e.g. the
    vocabulary and metrics) into `directory`, each atomically. `dtype` float16 halves the file; weights
    load back as float32. Returns the directory."""
    from safetensors.torch import save

    model = _unwrap(model)
    quantised = dtype if dtype in ("int8", "int4") else None
    if quantised:
        dtype = torch.float16  # for what is not a weight matrix
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise VtagError(f"unknown weight dtype '{dtype}': use one of {', '.join(_DTYPES)}, int8 or int4")
        dtype = _DTYPES[dtype]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = quantise_state(model.state_dict(), quantised, dtype)
    meta = dict(extra or {})
    if "model" in meta:
        raise VtagError("save_model: 'model' in extra would overwrite the model's settings; rename that key")
    meta = {"format": FORMAT, "name": model.config.name, "model": model.config.to_dict(),
            "weights_dtype": quantised or str(dtype).removeprefix("torch."), **meta}
    atomic_write_bytes(directory / WEIGHTS_FILE, save(tensors, metadata={"format": "pt"}))
    atomic_write_json(directory / CONFIG_FILE, meta)
    return directory


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[FusionModel, dict]:
    """Rebuilds a model from a folder written by `save_model` (or its config.json or model.safetensors)
    and loads its weights strictly, as float32. Returns (model, the whole config.json)."""

    config_path, weights_path, meta = model_files(path)
    config = ModelConfig.from_dict(meta["model"], source=str(config_path))
    require_weights(weights_path)
    # everything the config implies is checked against the files' headers before anything is built
    expected = expected_tensors(config, str(config_path))
    state = read_checked_state(config_path, weights_path, meta, expected, WEIGHTS_FILE)
    check_values(weights_path, state)
    if config.memory is not None:
        check_memory_state(state, config.num_classes, str(weights_path))
    state = dequantise_state(state)
    try:
        model = _built_from(config, state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        raise VtagError(f"{weights_path}: weights do not match the model in {config_path.name} ({detail[:300]})") from None
    return model.to(map_location), meta


def _built_from(config: ModelConfig, state: dict[str, torch.Tensor]) -> FusionModel:
    """The model of `config` holding `state`. Built on the meta device, so no time goes into a random
    initialisation the weights then overwrite (a second of `vtag classify`'s start-up otherwise)."""
    with torch.device("meta"):
        model = build_model(config)
    wanted = model.state_dict()
    state = {k: v.to(wanted[k].dtype) if k in wanted and v.dtype != wanted[k].dtype else v for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):  # a buffer the file does not hold
        model = build_model(config)
        model.load_state_dict(state, strict=True)
    return model
