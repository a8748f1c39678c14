"""The shipped kind of model scored in NumPy, without PyTorch: what `vtag classify RECORDS` uses on the
CPU (`--runtime auto`, the default for record files; `--runtime numpy` asks for it).

Importing PyTorch takes seconds and ~500 MB before a single weight is read (docs/RESULTS.md,
"Inference cost"), while the early-fusion FC networks (the shipped ensemble of three gated ones, its
neighbour memory, and the 2017 head on their trunk) are a few matrix products. So their weights are
read from model.safetensors as NumPy arrays (safetensors.numpy: no unpickling), unpacked from int8 /
int4 with the same float32 products as `dequantise_state` (bit-identical weights), and run as float32
matrix products; the memory's keys are unpacked a chunk at a time, so they never sit in memory whole.
The file checks are the PyTorch path's own (vtag.models.weight_header, memory_checks, trunk_files),
against the tensors worked out here for the models this runs; anything else (attention models,
input BatchNorm, a mixture-of-experts classifier, bfloat16 files, --device cuda) raises `Unsupported`
inside `load_if_supported`, which then leaves it to PyTorch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vtag.errors import VtagError
from vtag.io.records import INPUT_SPECS
from vtag.models.config import ModelConfig
from vtag.models.memory_checks import check_state as check_memory_state
from vtag.models.model_dirs import WEIGHTS_FILE, model_files, require_weights, resolve_model_dir
from vtag.models.packing import INT4_SCALE, dequantise_array, unpack_int4_array
from vtag.models.trunk_files import Unsupported, read_array_file, read_checked_state
from vtag.models.weight_header import MAX_WEIGHTS, check_finite

# early-fusion FC models: (layer kind, layers after the input one), as vtag.models.registry builds them
EARLY_FUSION = {"fc-early-fusion": ("fc", 1), "fc-residual-early-fusion": ("residual", 2),
                "fc-residual-gated-early-fusion": ("gated", 1)}
KEY_CHUNK = 4096  # stored videos whose keys are unpacked at a time: 10 MB at 640 dimensions


def unsupported(config: ModelConfig) -> str | None:
    """Why this runtime cannot score `config`'s model, or None when it can."""
    if config.name not in EARLY_FUSION:
        return f"model '{config.name}' (only the early-fusion FC models run without PyTorch)"
    if config.experts:
        return "a mixture-of-experts classifier"
    if config.input_norm:
        return "input BatchNorm"
    return None


def _linear(prefix: str, out_dim: int, in_dim: int) -> dict[str, tuple[tuple[int, ...], str]]:
    return {prefix + "weight": ((out_dim, in_dim), "F32"), prefix + "bias": ((out_dim,), "F32")}


def expected_arrays(config: ModelConfig, source: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """What vtag.models.weight_file.expected_tensors gives for these models (same names, shapes,
    dtypes and order), worked out without building anything."""
    kind, depth = EARLY_FUSION[config.name]
    width, classes = config.hidden, config.num_classes
    out: dict[str, tuple[tuple[int, ...], str]] = {}
    memory = config.memory
    if memory is not None:  # registered first: in FusionModel.__init__
        dim, videos = memory["dim"], memory["videos"]
        key_cols, key_dtype = (dim, "I8") if memory["bits"] == 8 else ((dim + 1) // 2, "U8")
        out.update({"memory.mean": ((memory["input_dim"],), "F32"),
                    "memory.projection": ((memory["input_dim"], dim), "F32"),
                    "memory.keys": ((videos, key_cols), key_dtype), "memory.key_scale": ((dim,), "F32"),
                    "memory.key_norm": ((videos,), "F32"), "memory.label_offsets": ((videos + 1,), "I32"),
                    "memory.label_values": ((memory["labels"],), "I16")})
    prefixes = [f"members.{i}." for i in range(config.members)] if config.members > 1 else [""]
    for prefix in prefixes:
        out.update(_linear(prefix + "body.0.0.", width, sum(config.input_dims)))
        for layer in range(1, depth + 1):
            body = f"{prefix}body.{layer}."
            out.update(_linear(body + ("0." if kind == "fc" else "f.0."), width, width))
            if kind == "gated":
                out.update(_linear(body + "gate.", width, width))
        out.update(_linear(prefix + "classifier.", classes, width))
    total = sum(int(np.prod(shape, dtype=np.float64)) for shape, _ in out.values())
    if total > MAX_WEIGHTS:
        raise VtagError(f"{source}: the settings ask for {total:,} weights ({4 * total / 1e9:,.0f} GB as float32), "
                        f"far more than any vtag model; the config is corrupt: restore it from the run that wrote it")
    return out


class Scratch:
    """Buffers reused from call to call: fresh memory costs a page fault per 4 kB on first touch, a
    third of a second for the shipped model's 224 MB of float32 weights if they were all made at once."""

    def __init__(self):
        self._flat: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        size = int(np.prod(shape))
        flat = self._flat.get(name)
        if flat is None or flat.size < size or flat.dtype != dtype:
            flat = self._flat[name] = np.empty(size, dtype)
        return flat[:size].reshape(shape)


def _unpacked(key: str, state: dict[str, np.ndarray], scratch: Scratch) -> np.ndarray:
    """The float32 tensor `key` of `state`, made in the scratch buffers (valid until the next call)."""
    stored = state[key]
    if key + INT4_SCALE in state:
        pairs = scratch.get("pairs", stored.shape, np.uint16)
        return dequantise_array(key, state, scratch.get("weight", (len(stored), 2 * stored.shape[1]), np.float32), pairs)
    return dequantise_array(key, state, scratch.get("weight", stored.shape, np.float32))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp(-x) = inf for very negative x: the score is then 0, as in torch
        return 1 / (1 + np.exp(-x))


def _unit(x: np.ndarray) -> np.ndarray:
    """torch.nn.functional.normalize: x / max(|x|, 1e-12) along the last axis."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), np.float32(1e-12))


class NumpyMemory:
    """vtag.models.memory.NeighbourMemory at inference, in NumPy."""

    def __init__(self, settings: dict, num_classes: int, visual_dim: int, state: dict[str, np.ndarray]):
        self.settings, self.num_classes, self.visual_dim = settings, num_classes, visual_dim
        self.mean, self.projection, self.key_scale, self.key_norm = (
            dequantise_array("memory." + name, state) for name in ("mean", "projection", "key_scale", "key_norm"))
        self.keys = state["memory.keys"]
        self.offsets = state["memory.label_offsets"].astype(np.int64)
        self.values = state["memory.label_values"].astype(np.int64)

    def unit_keys(self, start: int, stop: int, scratch: Scratch) -> np.ndarray:
        """Stored keys start..stop dequantised and normalised, float32, as NeighbourMemory.unit_keys
        (in `scratch`: valid until its next use)."""
        stored = self.keys[start:stop]
        quantised = stored if self.settings["bits"] == 8 else unpack_int4_array(
            stored, self.settings["dim"], scratch.get("key_pairs", stored.shape, np.uint16))
        keys = np.multiply(quantised, self.key_scale, dtype=np.float32,
                           out=scratch.get("keys", (len(stored), self.settings["dim"]), np.float32))
        keys /= self.key_norm[start:stop, None]
        return keys

    def query(self, visual: np.ndarray, audio: np.ndarray) -> np.ndarray:
        visual = visual[:, :self.visual_dim]  # the means: a mean+std model's first half
        audio = audio[:, :self.mean.shape[0] - self.visual_dim]
        key = np.concatenate([_unit(visual), np.float32(self.settings["audio_weight"]) * _unit(audio)], axis=-1)
        return (key - self.mean) @ self.projection

    def neighbours(self, visual: np.ndarray, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(index [B, k] of the k nearest stored videos, most similar first; vote weights [B, k], float64)."""
        query = _unit(self.query(visual, audio))
        scratch = Scratch()
        videos = len(self.keys)
        k = min(self.settings["k"], videos)
        best = np.empty((len(query), 0), np.float32)
        index = np.empty((len(query), 0), np.int64)
        for start in range(0, videos, KEY_CHUNK):  # a running top k: the similarities are never all held
            stop = min(start + KEY_CHUNK, videos)
            similarity = np.matmul(query, self.unit_keys(start, stop, scratch).T,
                                   out=scratch.get("similarity", (len(query), stop - start), np.float32))
            best = np.concatenate([best, similarity], axis=1)
            index = np.concatenate([index, np.broadcast_to(np.arange(start, stop), (len(query), stop - start))], axis=1)
            if best.shape[1] > k:
                keep = np.argpartition(-best, k - 1, axis=1)[:, :k]
                best, index = np.take_along_axis(best, keep, 1), np.take_along_axis(index, keep, 1)
        order = np.argsort(-best, axis=1, kind="stable")
        best, index = np.take_along_axis(best, order, 1), np.take_along_axis(index, order, 1)
        top = best.astype(np.float64) / self.settings["temperature"]
        weights = np.exp(top - top.max(axis=1, keepdims=True))
        return index, weights / weights.sum(axis=1, keepdims=True)

    def votes(self, index: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Label votes [B, C] (float64): each neighbour's weight to each of its labels."""
        rows, k = index.shape
        starts = self.offsets[index].ravel()
        counts = self.offsets[index + 1].ravel() - starts
        pair = np.repeat(np.arange(rows * k), counts)
        first = np.cumsum(counts) - counts  # where each pair's labels begin in `pair`
        classes = self.values[starts[pair] + np.arange(len(pair)) - first[pair]]
        cells = (pair // k) * self.num_classes + classes
        return np.bincount(cells, weights=weights.ravel()[pair], minlength=rows * self.num_classes).reshape(
            rows, self.num_classes)

    def blend(self, visual: np.ndarray, audio: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """The blended logits, float64, as NeighbourMemory.blend."""
        weight, epsilon = self.settings["weight"], self.settings["epsilon"]
        votes = (self.votes(*self.neighbours(visual, audio)) + epsilon) / (1 + 2 * epsilon)
        return (1 - weight) * logits.astype(np.float64) + weight * (np.log(votes) - np.log1p(-votes))


class NumpyModel:
    """Stands in for the torch model where vtag scores features (as vtag.tasks.onnx_runtime's
    OnnxScorer does): it has the model's `config`, and `probabilities(visual, audio)`."""

    runtime = "numpy"

    def __init__(self, config: ModelConfig, meta: dict, state: dict[str, np.ndarray]):
        self.config, self.meta = config, meta
        self.kind, self.depth = EARLY_FUSION[config.name]
        self.memory = (NumpyMemory(config.memory, config.num_classes, INPUT_SPECS["mean"][0], state)
                       if config.memory is not None else None)
        self._stored = {k: v for k, v in state.items() if not k.startswith("memory.")}
        self._scratch = Scratch()

    def eval(self) -> NumpyModel:
        return self

    def _linear(self, x: np.ndarray, prefix: str) -> np.ndarray:
        # unpacked layer by layer into one buffer, on every call: kept, the float32 weights would be
        # 224 MB (page faults included, a third of a second to make); unpacking is ~1/10 of the matmul
        weight = _unpacked(prefix + "weight", self._stored, self._scratch)
        return x @ weight.T + dequantise_array(prefix + "bias", self._stored)

    def _network(self, x: np.ndarray, prefix: str) -> np.ndarray:
        x = np.maximum(self._linear(x, prefix + "body.0.0."), 0)
        for layer in range(1, self.depth + 1):
            body = f"{prefix}body.{layer}."
            if self.kind == "fc":
                x = np.maximum(self._linear(x, body + "0."), 0)
                continue
            f = np.maximum(self._linear(x, body + "f.0."), 0)
            if self.kind == "residual":
                x = x + f
            else:
                g = _sigmoid(self._linear(x, body + "gate."))
                x = g * f + (1 - g) * x
        return self._linear(x, prefix + "classifier.")

    def network_logits(self, visual: np.ndarray, audio: np.ndarray) -> np.ndarray:
        """float32 [B, C]: the networks' logits, averaged over an ensemble's members."""
        dv, da = self.config.input_dims
        if visual.ndim != 2 or visual.shape[-1] != dv or audio.ndim != 2 or audio.shape[-1] != da:
            raise VtagError(
                f"model '{self.config.name}' ({self.config.input_spec} inputs) expects visual [B, {dv}] and audio "
                f"[B, {da}], got {list(visual.shape)} and {list(audio.shape)}: check the input spec"
            )
        x = np.concatenate([visual, audio], axis=-1).astype(np.float32, copy=False)
        members = self.config.members
        if members == 1:
            return self._network(x, "")
        return np.stack([self._network(x, f"members.{i}.") for i in range(members)]).mean(0)

    def logits(self, visual: np.ndarray, audio: np.ndarray) -> np.ndarray:
        """What the torch model's forward gives in eval mode (float64 when blended with the memory)."""
        visual, audio = np.asarray(visual, np.float32), np.asarray(audio, np.float32)
        logits = self.network_logits(visual, audio)
        return logits if self.memory is None else self.memory.blend(visual, audio, logits)

    def probabilities(self, visual: np.ndarray, audio: np.ndarray) -> np.ndarray:
        """float64 [B, C] sigmoid scores. Weights that overflow give NaN here as in torch, silently:
        the caller names the video (vtag.tasks.evaluate.score_batches)."""
        with np.errstate(over="ignore", invalid="ignore"):
            return _sigmoid(self.logits(visual, audio).astype(np.float64))


def load_numpy_model(path: str | Path) -> NumpyModel:
    """`load_model` for the models this runtime runs, with its checks; `Unsupported` for any other."""
    config_path, weights_path, meta = model_files(path)
    config = ModelConfig.from_dict(meta["model"], source=str(config_path))
    require_weights(weights_path)
    why = unsupported(config)
    if why is not None:
        raise Unsupported(why)
    expected = expected_arrays(config, str(config_path))
    state = read_checked_state(config_path, weights_path, meta, expected, WEIGHTS_FILE, read=read_array_file)
    check_finite(weights_path, state)
    if config.memory is not None:
        check_memory_state(state, config.num_classes, str(weights_path))
    return NumpyModel(config, meta, state)


def load_if_supported(model, device: str, runtime: str, vocabulary: str) -> tuple[NumpyModel, dict, Path] | None:
    """(model, its config.json dict, its folder) where this runtime can score `model` (None: the shipped
    model of `vocabulary`) on `device`; None for `runtime` "auto" where it cannot (PyTorch then
    does); "numpy" where it cannot is a one-line refusal."""
    from vtag.devices import surely_cpu

    if not surely_cpu(device):
        if runtime == "numpy" and device != "auto":
            raise VtagError(f"--runtime numpy runs on the CPU, not --device {device}: drop one of the two")
        if runtime != "numpy":
            return None
    directory = resolve_model_dir(model, vocabulary)
    try:
        scorer = load_numpy_model(directory)
    except Unsupported as why:
        if runtime == "numpy":
            raise VtagError(f"{directory}: --runtime numpy cannot run it ({why}): use --runtime torch") from None
        return None
    return scorer, scorer.meta, directory
