"""Where a model lives on disk, without PyTorch: the file names of a model folder, the shipped
models, a model name or folder resolved to its folder, and its config.json read (bounded). Used by
`load_model` (vtag.models.storage) and the NumPy runtime (vtag.models.numpy_runtime)."""

from __future__ import annotations

import json
from pathlib import Path

from vtag.errors import VtagError
from vtag.io.paths import REPO_WEIGHTS_DIR
from vtag.models.config import MODEL_FACTS

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT = "vtag-model"
DEFAULT_MODEL_DIR = REPO_WEIGHTS_DIR / "default"
# the shipped model of each vocabulary: the 2017 one is a head on the 2018 model's trunk (vtag.models.heads)
DEFAULT_MODEL_DIRS = {"2018": DEFAULT_MODEL_DIR, "2017": REPO_WEIGHTS_DIR / "default-2017"}


def model_files(path: str | Path) -> tuple[Path, Path, dict]:
    """(config.json, model.safetensors, the config read) of a model folder, or of its config.json or
    model.safetensors; one line naming what is missing (the weights: `require_weights`)."""
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    if not path.is_dir() and path.name not in (CONFIG_FILE, WEIGHTS_FILE):
        raise VtagError(f"{path}: not a model folder, config.json or model.safetensors")
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not config_path.is_file():
        raise VtagError(f"{config_path}: missing; a model folder holds config.json and model.safetensors (written by `vtag train`)")
    return config_path, weights_path, read_config(config_path)


def require_weights(weights_path: Path) -> None:
    """Checked after the config's settings, so that a bad setting is named first."""
    if not weights_path.is_file():
        raise VtagError(f"{weights_path}: missing; copy the weights beside config.json")


# A config.json holds settings, a vocabulary name, metrics and the training files' names: far below this.
MAX_CONFIG_BYTES = 16 << 20


def read_config(config_path: Path) -> dict:
    """A model's config.json, bounded, as a dict with a "model" object (or one line saying what is wrong)."""
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
    if name in MODEL_FACTS:
        for candidate in (Path("runs") / name / "best", Path("runs") / name):
            if (candidate / "config.json").is_file():
                return candidate
        raise VtagError(
            f"model '{name}' has no trained weights here (looked in runs/{name}/best): train it with "
            f"`vtag train --model {name} ...` or pass --model PATH to a trained model folder"
        )
    raise VtagError(f"no model named or found at '{name}': give a model folder, its config.json, or a registry name (`vtag models`)")
