"""A model on disk: `config.json` (plain data: the settings under "model", plus vocabulary and metrics)
beside `model.safetensors`, written atomically; and where a model name or folder points."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from vtag.errors import VtagError
from vtag.io.atomic import atomic_write_bytes, atomic_write_json
from vtag.io.paths import REPO_WEIGHTS_DIR
from vtag.models.architectures import FusionModel
from vtag.models.packing import dequantise_state, quantise_state
from vtag.models.memory import check_state as check_memory_state
from vtag.models.registry import MODELS, ModelConfig, build_model
from vtag.models.trunk_files import is_own, read_tensor_file, trunk_file, trunk_tensors
from vtag.models.weight_file import check_header, check_values, expected_tensors

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT = "vtag-model"
DEFAULT_MODEL_DIR = REPO_WEIGHTS_DIR / "default"
# the shipped model of each vocabulary: the 2017 one is a head on the 2018 model's trunk (vtag.models.heads)
DEFAULT_MODEL_DIRS = {"2018": DEFAULT_MODEL_DIR, "2017": REPO_WEIGHTS_DIR / "default-2017"}


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

    path = Path(path)
    directory = path if path.is_dir() else path.parent
    if not path.is_dir() and path.name not in (CONFIG_FILE, WEIGHTS_FILE):
        raise VtagError(f"{path}: not a model folder, config.json or model.safetensors")
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not config_path.is_file():
        raise VtagError(f"{config_path}: missing; a model folder holds config.json and model.safetensors (written by `vtag train`)")
    meta = _read_config(config_path)
    config = ModelConfig.from_dict(meta["model"], source=str(config_path))
    if not weights_path.is_file():
        raise VtagError(f"{weights_path}: missing; copy the weights beside config.json")
    # everything the config implies is checked against the files' headers before anything is built
    expected = expected_tensors(config, str(config_path))
    if "trunk" in meta:  # a head model (vtag.models.heads): the rest of its tensors are its trunk's
        trunk_path = trunk_file(config_path, meta["trunk"], WEIGHTS_FILE, meta.get("trunk_sha256"))
        check_header(weights_path, {k: v for k, v in expected.items() if is_own(k)}, config_path.name)
        check_header(trunk_path, {k: v for k, v in expected.items() if not is_own(k)}, config_path.name, ignore=is_own)
        state = read_tensor_file(weights_path)
        state = {**trunk_tensors(trunk_path, state), **state}
    else:
        check_header(weights_path, expected, config_path.name)
        state = read_tensor_file(weights_path)
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


# A config.json holds settings, a vocabulary name, metrics and the training files' names: far below this.
MAX_CONFIG_BYTES = 16 << 20


def _read_config(config_path: Path) -> dict:
    try:
        with open(config_path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise VtagError(f"{config_path}: over {MAX_CONFIG_BYTES >> 20} MB, far larger than a model's config.json; "
                            "the file is corrupt: restore it from the run that wrote it")
        meta = json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VtagError(f"{config_path}: not readable JSON ({exc}); restore it from the run that wrote it") from None
    except RecursionError:
        raise VtagError(f"{config_path}: nested too deeply to be a model's config.json; the file is corrupt: "
                        "restore it from the run that wrote it") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("model"), dict):
        raise VtagError(f"{config_path}: no \"model\" settings object; is this a vtag model's config.json?")
    return meta


def resolve_model_dir(model: str | Path | None, vocabulary: str = "2018") -> Path:
    """A model is named by a directory (or its config.json), by a registry name trained into
    runs/NAME, or not at all (the shipped model of `vocabulary`)."""
    if model is None:
        default = DEFAULT_MODEL_DIRS.get(str(vocabulary))
        if default is None:
            raise VtagError(f"vtag ships models for the 2017 and 2018 vocabularies, not '{vocabulary}': "
                            "pass --model PATH to a model trained for it")
        if not (default / "config.json").is_file():
            raise VtagError(
                f"the default {vocabulary} model is missing from {default}: reinstall vtag from a full "
                "checkout, or pass --model PATH to a trained model"
            )
        return default
    path = Path(model)
    if path.is_file() and path.name == "config.json":
        return path.parent
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise VtagError(f"{path} holds no config.json: pass the folder `vtag train` wrote (its best/ or last/)")
        return path
    name = str(model)
    if name in MODELS:
        for candidate in (Path("runs") / name / "best", Path("runs") / name):
            if (candidate / "config.json").is_file():
                return candidate
        raise VtagError(
            f"model '{name}' has no trained weights here (looked in runs/{name}/best): train it with "
            f"`vtag train --model {name} ...` or pass --model PATH to a trained model folder"
        )
    raise VtagError(f"no model named or found at '{name}': give a model folder, its config.json, or a registry name (`vtag models`)")
