"""Scoring with onnxruntime instead of PyTorch: `--runtime onnx` on `vtag classify`, `batch` and `eval`.

`--model` may name an export folder (`vtag export ... -o DIR`, holding export.json and model.onnx) or
anything `--runtime torch` takes (a model folder, a trained run name, nothing for the shipped
model); a model that is not an export is exported on first use into the cache,
$VTAG_CACHE/onnx/<sha256 of its config.json and weights>/, and reused from there. Only the fusion
model runs in onnxruntime: features of media files still come from the PyTorch extractors.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from vtag.errors import VtagError

RUNTIMES = ("torch", "onnx")


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise VtagError(f"--runtime {runtime}: use torch or onnx")
    if runtime == "onnx":
        from vtag.models.export import require_onnx

        require_onnx("--runtime onnx")
    return runtime


class OnnxScorer:
    """An exported fusion model in an onnxruntime session. Stands in for the PyTorch model where
    vtag scores features: it has the model's `config`, and `probabilities(visual, audio)`."""

    runtime = "onnx"

    def __init__(self, directory: str | Path, threads: int = 0):
        import onnxruntime as ort

        from vtag.models.export import EXPORT_FILE, FORMAT
        from vtag.models.registry import ModelConfig

        self.directory = Path(directory)
        meta_path = self.directory / EXPORT_FILE
        try:
            self.meta = json.loads(meta_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise VtagError(f"{meta_path}: not readable ({exc}); re-export with `vtag export`") from None
        if not isinstance(self.meta, dict) or self.meta.get("format") != FORMAT:
            raise VtagError(f"{meta_path}: not a vtag ONNX export (written by `vtag export`)")
        if self.meta.get("kind") != "fusion":
            raise VtagError(f"{self.directory}: holds the {self.meta.get('kind')} extractor, not a fusion model")
        self.config = ModelConfig.from_dict(self.meta["model"], source=str(meta_path))
        graph = self.directory / self.meta.get("graph", "model.onnx")
        if not graph.is_file():
            raise VtagError(f"{graph}: missing; re-export with `vtag export`")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001  (onnxruntime raises its own exception types for a bad file)
            raise VtagError(f"{graph}: onnxruntime cannot load it ({str(exc)[:200]}); re-export with `vtag export`") from None

    def eval(self) -> OnnxScorer:
        return self

    def probabilities(self, visual: np.ndarray, audio: np.ndarray) -> np.ndarray:
        """float64 [B, C] sigmoid scores."""
        dv, da = self.config.input_dims
        visual, audio = np.asarray(visual, np.float32), np.asarray(audio, np.float32)
        if visual.ndim != 2 or visual.shape[1] != dv or audio.ndim != 2 or audio.shape[1] != da:
            raise VtagError(f"model '{self.config.name}' expects visual [B, {dv}] and audio [B, {da}], got "
                            f"{list(visual.shape)} and {list(audio.shape)}: check the input spec")
        return self.session.run(None, {"visual": np.ascontiguousarray(visual), "audio": np.ascontiguousarray(audio)})[0]

    def model_meta(self) -> dict:
        """What the Tagger and evaluation read from a model's config.json."""
        meta = {"name": self.meta.get("name", self.config.name), "runtime": "onnx", "onnx_dir": str(self.directory),
                "weights": self.meta.get("weights")}
        vocab_file = self.meta.get("vocabulary_file")
        if vocab_file and (self.directory / vocab_file).is_file():
            meta["vocabulary"] = str(self.directory / vocab_file)  # the export stands alone
        elif self.meta.get("vocabulary"):
            meta["vocabulary"] = self.meta["vocabulary"]
        return meta


def is_export_dir(path: str | Path | None) -> bool:
    from vtag.models.export import EXPORT_FILE

    return path is not None and (Path(path) / EXPORT_FILE).is_file()


def cached_export(model_dir: Path) -> Path:
    """The export of a model folder in the cache, made on first use."""
    from vtag.models.export import EXPORT_FILE, export
    from vtag.weights import cache_dir

    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        with open(model_dir / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    target = cache_dir() / "onnx" / digest.hexdigest()[:32]
    if not (target / EXPORT_FILE).is_file():  # export.json is written last: a partial export has none
        export(model_dir, target)
    return target


def load_onnx_scorer(model: str | Path | None = None) -> tuple[OnnxScorer, dict, Path]:
    """(scorer, a config.json-like dict, the export folder) for `--runtime onnx`."""
    check_runtime("onnx")
    if is_export_dir(model):
        directory = Path(model)
    else:
        from vtag.models.storage import resolve_model_dir

        directory = cached_export(resolve_model_dir(model))
    scorer = OnnxScorer(directory)
    return scorer, scorer.model_meta(), directory
