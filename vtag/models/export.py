"""Exporting vtag's networks to ONNX, so that onnxruntime (or any ONNX runtime) can run them without
PyTorch: `vtag export MODEL -o DIR --format onnx [--int8]`.

A fusion model's graph takes `visual [B, Dv]` and `audio [B, Da]` (float32, B dynamic) and returns
`probabilities [B, C]`, the sigmoid of the model's logits in float64: in float32 every logit above
~17 becomes exactly 1.0 and such ties would reorder the top labels (the PyTorch path scores in float64
for the same reason). The whole model goes into the graph: ensemble members (their logits averaged)
and the neighbour memory (vtag/models/memory.py), re-expressed in ops ONNX has: a matmul against the stored
keys, TopK, a Gather of each neighbour's labels (padded to a fixed count) and a ScatterElements-add of
their votes. The 4-bit keys stay 4-bit in the file and are unpacked inside the graph with float
arithmetic; onnxruntime folds that constant subgraph once when it loads the model.

Extractors: `inception` takes raw uint8 RGB frames [B, H, W, 3] of one fixed size (chosen at export:
the TF1 resize's taps depend on it) and returns the PCA'd, whitened 1,024-d features before
quantization; `vggish` takes log-mel examples [B, 96, 64] and returns the PCA'd 128-d features.

`--int8` quantizes the weight matrices with onnxruntime's dynamic quantization (int8 weights, int8
activations computed per batch). onnxruntime quantizes MatMul but not Gemm, so Linear layers, which
the exporter writes as Gemm, are first rewritten as MatMul + Add. `--int4` writes the weight matrices
as onnxruntime's MatMulNBits at 4 bits in vtag's own int4 scheme, so the shipped model's 4-bit weights
go into the graph exactly as they are stored.

The exporter is torch.onnx's TorchScript one (`dynamo=False`): it exports all 18 registry models and
the memory, needs no onnxscript, and is ~5x faster than the dynamo exporter here. It drops inputs a
graph does not use (the other modality of a single-modality model); they are put back, unused, so that
every graph has the same two inputs.
"""

from __future__ import annotations

import io
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vtag.errors import VtagError
from vtag.io.atomic import atomic_write_bytes, atomic_write_json

FORMAT = "vtag-onnx"
EXPORT_FILE = "export.json"
GRAPH_FILE = "model.onnx"
OPSET = 17  # ScatterElements with reduction=add needs 16
EXTRACTORS = ("inception", "vggish")
INSTALL_HINT = "pip install 'vtag[onnx]'"


def require_onnx(what: str = "ONNX export") -> None:
    """One line naming the extra when onnx or onnxruntime is missing."""
    for module in ("onnx", "onnxruntime"):
        try:
            __import__(module)
        except ImportError:
            raise VtagError(f"{what} needs the {module} package: {INSTALL_HINT}") from None


# ---- graphs ---------------------------------------------------------------------------------------


class MemoryVote(nn.Module):
    """NeighbourMemory.blend in ONNX-exportable ops: the same arithmetic, in the same order, with the
    variable-length label lists padded to one table [videos, most labels] (padding = num_classes, a
    column cut off after the scatter)."""

    def __init__(self, memory: nn.Module):
        super().__init__()
        s = memory.settings
        self.settings, self.num_classes, self.visual_dim = dict(s), memory.num_classes, memory.visual_dim
        self.register_buffer("mean", memory.mean.detach().clone())
        self.register_buffer("projection", memory.projection.detach().clone())
        self.register_buffer("keys", memory.keys.detach().clone())
        self.register_buffer("key_scale", memory.key_scale.detach().clone())
        self.register_buffer("key_norm", memory.key_norm.detach().clone())
        offsets = memory.label_offsets.numpy().astype(np.int64)
        values = memory.label_values.numpy().astype(np.int64)
        counts = np.diff(offsets)
        table = np.full((len(counts), max(1, int(counts.max()))), self.num_classes, np.int16)
        for row, (start, count) in enumerate(zip(offsets[:-1], counts)):
            table[row, :count] = values[start:start + count]
        self.register_buffer("labels", torch.from_numpy(table))

    def unit_keys(self) -> torch.Tensor:
        if self.settings["bits"] == 8:
            values = self.keys.float()
        else:  # two values a byte, each + 8, low nibble first (vtag.models.packing.pack_int4)
            packed = self.keys.float()
            high = torch.floor(packed / 16)
            low = packed - 16 * high
            values = torch.stack([low, high], dim=-1).reshape(packed.shape[0], -1)[:, :self.settings["dim"]] - 8
        return (values * self.key_scale) / self.key_norm[:, None]

    def forward(self, visual: torch.Tensor, audio: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        s = self.settings
        visual = visual[:, :self.visual_dim]
        audio = audio[:, :self.mean.shape[0] - self.visual_dim]
        joint = torch.cat([nn.functional.normalize(visual, dim=-1),
                           s["audio_weight"] * nn.functional.normalize(audio, dim=-1)], dim=-1)
        query = nn.functional.normalize((joint - self.mean) @ self.projection, dim=-1)
        similarity = query @ self.unit_keys().T
        top, index = similarity.topk(min(s["k"], self.keys.shape[0]), dim=-1)
        weights = torch.softmax(top.double() / s["temperature"], dim=-1)
        labels = self.labels[index].long()  # [B, k, L]
        spread = weights.unsqueeze(-1).expand(-1, -1, labels.shape[-1])
        empty = torch.zeros_like(logits, dtype=torch.float64)
        scores = torch.cat([empty, empty[:, :1]], dim=1)
        votes = scores.scatter_add(1, labels.flatten(1), spread.flatten(1))[:, :self.num_classes]
        epsilon = s["epsilon"]
        votes = (votes + epsilon) / (1 + 2 * epsilon)
        vote_logits = torch.log(votes) - torch.log(1 - votes)
        return (1 - s["weight"]) * logits.double() + s["weight"] * vote_logits


class ScoringGraph(nn.Module):
    """A vtag fusion model (plain, ensemble, with or without memory) as (visual, audio) -> float64
    probabilities."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.net = model.eval()
        self.memory = MemoryVote(model.memory) if model.config.memory is not None else None

    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        logits = self.net.network_logits(visual, audio)
        if self.memory is not None:
            logits = self.memory(visual, audio, logits)
        return torch.sigmoid(logits.double())


class InceptionGraph(nn.Module):
    """uint8 frames [B, H, W, 3] of a fixed size -> PCA'd, whitened rgb features [B, 1024] float32."""

    def __init__(self, inception: nn.Module, pca):
        super().__init__()
        self.inception = inception.eval()
        self.register_buffer("pca_mean", torch.from_numpy(pca.mean.astype(np.float32)))
        self.register_buffer("pca_projection", torch.from_numpy(pca.projection.astype(np.float32)))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return (self.inception(frames) - self.pca_mean) @ self.pca_projection


class VGGishGraph(nn.Module):
    """log-mel examples [B, 96, 64] -> PCA'd audio features [B, 128] float32."""

    def __init__(self, vggish: nn.Module, pca):
        super().__init__()
        self.vggish = vggish.eval()
        self.register_buffer("pca_means", torch.from_numpy(pca.means.astype(np.float32)))
        self.register_buffer("pca_vectors", torch.from_numpy(pca.eigen_vectors.T.astype(np.float32)))

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        return (self.vggish(log_mel) - self.pca_means) @ self.pca_vectors


# ---- ONNX -----------------------------------------------------------------------------------------


def to_onnx(module: nn.Module, example: tuple[torch.Tensor, ...], input_names: list[str], output_name: str):
    """An onnx.ModelProto of `module` with a dynamic first axis ("batch") on every input and the output."""
    import onnx

    dynamic = {name: {0: "batch"} for name in [*input_names, output_name]}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about the shape checks' Python branches
        torch.onnx.export(module.eval(), example, buffer, input_names=input_names, output_names=[output_name],
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False,
                          do_constant_folding=False)  # folding would store the memory keys unpacked, as floats (8x)
    proto = onnx.load_from_string(buffer.getvalue())
    present = {i.name for i in proto.graph.input}
    for position, (name, tensor) in enumerate(zip(input_names, example)):
        if name not in present:  # an input the model ignores: kept so every graph takes the same inputs
            elem = onnx.helper.np_dtype_to_tensor_dtype(tensor.numpy().dtype)
            shape = ["batch", *tensor.shape[1:]]
            proto.graph.input.insert(position, onnx.helper.make_tensor_value_info(name, elem, shape))
    onnx.checker.check_model(proto)
    return proto


def gemm_to_matmul(proto) -> None:
    """Rewrite, in place, each Gemm with a constant weight as MatMul + Add (onnxruntime's dynamic
    quantization handles MatMul only)."""
    import onnx
    from onnx import numpy_helper

    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    nodes = []
    for node in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if (node.op_type != "Gemm" or node.input[1] not in inits or attrs.get("transA", 0)
                or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0):
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(inits[node.input[1]])
        if attrs.get("transB", 0):
            weight = weight.T
        weight_name = node.input[1] + "_for_matmul"
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight), weight_name))
        product = node.output[0] + "_matmul"
        nodes.append(onnx.helper.make_node("MatMul", [node.input[0], weight_name], [product if len(node.input) > 2 else node.output[0]],
                                           name=node.name + "_matmul"))
        if len(node.input) > 2:
            nodes.append(onnx.helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=node.name + "_add"))
    _replace_nodes(graph, nodes)


def _replace_nodes(graph, nodes) -> None:
    """Give `graph` the node list `nodes`, dropping the initializers no node reads any more (the
    float weights a rewritten node replaced), so the file does not carry both copies."""
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def quantize_int8(proto, per_channel: bool = True, op_types: tuple[str, ...] = ("MatMul",)):
    """The graph with its constant weight matrices (and, with "Conv" in `op_types`, convolution
    kernels) at int8 (onnxruntime dynamic quantization)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    gemm_to_matmul(proto)
    with tempfile.TemporaryDirectory(prefix="vtag-int8-") as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(proto.SerializeToString())
        quantize_dynamic(source, target, op_types_to_quantize=list(op_types), per_channel=per_channel,
                         weight_type=QuantType.QInt8, extra_options={"MatMulConstBOnly": True})
        return onnx.load(str(target))


INT4_BLOCK = 64  # vtag.models.packing.INT4_GROUP: the shipped 4-bit weights share a scale per 64 inputs


def quantize_int4(proto):
    """The graph with its weight matrices (not the memory's) as onnxruntime MatMulNBits at 4 bits,
    in vtag's own int4 scheme (vtag.models.packing._int4: levels -7..7 stored + 8, a float16 scale per 64
    inputs, low nibble first), which is MatMulNBits' layout with its default zero point 8. Weights
    saved with --save-dtype int4 (the shipped model's) are already on that grid: they go in unchanged."""
    import onnx
    from onnx import numpy_helper

    from vtag.models.packing import _int4

    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    gemm_to_matmul(proto)
    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    nodes = []
    for node in graph.node:
        weight = inits.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) > 1 else None
        if weight is None or node.input[1].startswith("memory.") or len(weight.dims) != 2:
            nodes.append(node)
            continue
        k, n = weight.dims
        if k % INT4_BLOCK or k * n < 4096:
            nodes.append(node)
            continue
        rows = torch.from_numpy(np.ascontiguousarray(numpy_helper.to_array(weight).T))  # [N, K], as nn.Linear
        packed, scale = _int4(rows)
        base = node.input[1]
        graph.initializer.append(numpy_helper.from_array(packed.numpy().reshape(n, k // INT4_BLOCK, INT4_BLOCK // 2), base + "_int4"))
        graph.initializer.append(numpy_helper.from_array(scale.float().numpy().reshape(-1), base + "_int4_scale"))
        nodes.append(onnx.helper.make_node("MatMulNBits", [node.input[0], base + "_int4", base + "_int4_scale"],
                                           list(node.output), name=node.name + "_int4", domain="com.microsoft",
                                           K=k, N=n, bits=4, block_size=INT4_BLOCK))
    _replace_nodes(graph, nodes)
    if not any(o.domain == "com.microsoft" for o in proto.opset_import):
        proto.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    return proto


def _quantized(proto, weights: str, op_types: tuple[str, ...] = ("MatMul",)):
    if weights == "int8":
        return quantize_int8(proto, op_types=op_types)
    if weights == "int4":
        return quantize_int4(proto)
    if weights != "float32":
        raise VtagError(f"unknown export precision '{weights}': use float32, int8 or int4")
    return proto


# ---- export ---------------------------------------------------------------------------------------


@dataclass
class ExportResult:
    directory: Path
    kind: str  # "fusion" | "inception" | "vggish"
    name: str
    weights: str  # "float32" | "int8"
    graph_bytes: int
    note: str = ""


def _write(proto, out: Path, meta: dict[str, Any], extra_files: dict[str, bytes] | None = None) -> int:
    out.mkdir(parents=True, exist_ok=True)
    data = proto.SerializeToString()
    atomic_write_bytes(out / GRAPH_FILE, data)
    for name, content in (extra_files or {}).items():
        atomic_write_bytes(out / name, content)
    meta = {"format": FORMAT, "graph": GRAPH_FILE, "opset": OPSET, "exporter": "torch.onnx (TorchScript)",
            "torch": torch.__version__, **meta}
    atomic_write_json(out / EXPORT_FILE, meta)
    return len(data)


def _vocabulary_file(reference: str) -> Path | None:
    from vtag.io.vocab import VOCAB_FILES, WEIGHTS_DIR

    if reference in VOCAB_FILES:
        return WEIGHTS_DIR / VOCAB_FILES[reference]
    path = Path(reference)
    return path if path.is_file() else None


def export_fusion(model: nn.Module, out: str | Path, int8: bool = False, meta: dict | None = None,
                  source: str = "", note: str = "", int4: bool = False) -> ExportResult:
    """Writes `model`'s graph (model.onnx), export.json and its vocabulary CSV into `out`."""
    require_onnx()
    out = Path(out)
    meta = dict(meta or {})
    config = model.config
    dv, da = config.input_dims
    example = (torch.zeros(2, dv), torch.zeros(2, da))
    proto = to_onnx(ScoringGraph(model), example, ["visual", "audio"], "probabilities")
    weights = _precision(int8, int4)
    proto = _quantized(proto, weights)
    vocabulary = meta.get("vocabulary", "2018")
    extra_files, vocabulary_file = {}, None
    vocab_path = _vocabulary_file(str(vocabulary)) if vocabulary else None
    if vocab_path is not None:
        vocabulary_file = vocab_path.name
        extra_files[vocabulary_file] = vocab_path.read_bytes()
    info = {
        "kind": "fusion", "name": meta.get("name") or config.name, "model": config.to_dict(),
        "weights": weights, "vocabulary": vocabulary, "vocabulary_file": vocabulary_file,
        "inputs": {"visual": ["batch", dv], "audio": ["batch", da]},
        "outputs": {"probabilities": ["batch", config.num_classes]}, "output_dtype": "float64",
        "source": source, "source_weights_dtype": meta.get("weights_dtype"),
    }
    if note:
        info["note"] = note
    size = _write(proto, out, info, extra_files)
    return ExportResult(out, "fusion", info["name"], info["weights"], size, note)


def _precision(int8: bool, int4: bool) -> str:
    if int8 and int4:
        raise VtagError("--int8 and --int4 exclude each other: pick one")
    return "int8" if int8 else "int4" if int4 else "float32"


def extractor_graph(kind: str, random_weights: bool = False) -> tuple[nn.Module, tuple[str, str]]:
    """The extractor `kind` as a module from its input to PCA'd features, and (input, output) names."""
    from vtag.features.inception import load_inception
    from vtag.features.pca import load_vggish_pca, load_yt8m_pca
    from vtag.features.vggish import load_vggish

    if kind == "inception":
        from vtag.features.extract import (
            _fuse_batch_norm,  # as vtag extract runs it; and int8 then covers the BN too
        )

        inception = _fuse_batch_norm(load_inception(random_weights=random_weights))
        return InceptionGraph(inception, load_yt8m_pca(random_weights)), ("frames", "rgb")
    if kind == "vggish":
        return VGGishGraph(load_vggish(random_weights=random_weights), load_vggish_pca(random_weights)), ("log_mel", "audio")
    raise VtagError(f"unknown extractor '{kind}': use one of {', '.join(EXTRACTORS)}")


def export_extractor(kind: str, out: str | Path, int8: bool = False, random_weights: bool = False,
                     frame_size: tuple[int, int] = (360, 640), int4: bool = False) -> ExportResult:
    require_onnx()
    out = Path(out)
    graph, (input_name, output_name) = extractor_graph(kind, random_weights)
    if kind == "inception":
        height, width = frame_size
        if height < 1 or width < 1:
            raise VtagError(f"--frame-size {height}x{width}: both sides must be positive")
        example = torch.zeros(1, height, width, 3, dtype=torch.uint8)
        shape = ["batch", height, width, 3]
    else:
        from vtag.features.vggish import EXAMPLE_FRAMES, NUM_BANDS

        example = torch.zeros(1, EXAMPLE_FRAMES, NUM_BANDS)
        shape = ["batch", EXAMPLE_FRAMES, NUM_BANDS]
    proto = to_onnx(graph, (example,), [input_name], output_name)
    weights = _precision(int8, int4)
    proto = _quantized(proto, weights, op_types=("MatMul", "Conv"))
    note = "randomly initialised weights: the features are NOT meaningful" if random_weights else ""
    info = {"kind": kind, "name": kind, "weights": weights,
            "inputs": {input_name: shape}, "input_dtype": str(example.numpy().dtype),
            "outputs": {output_name: ["batch", 1024 if kind == "inception" else 128]}, "output_dtype": "float32",
            "features": "PCA'd and whitened, before 8-bit quantization (vtag.features.pca.quantize)",
            "random_weights": random_weights}
    if note:
        info["note"] = note
    size = _write(proto, out, info)
    return ExportResult(out, kind, kind, weights, size, note)


def fresh_model(name: str, **overrides: Any) -> nn.Module:
    """A freshly initialised registry model (2018 vocabulary unless num_classes is given)."""
    from vtag.models.registry import create_model

    overrides = {k: v for k, v in overrides.items() if v is not None}
    return create_model(name, **overrides).eval()


def export(model: str | Path | None, out: str | Path, fmt: str = "onnx", int8: bool = False,
           random_weights: bool = False, frame_size: tuple[int, int] = (360, 640), int4: bool = False,
           **fresh: Any) -> ExportResult:
    """`vtag export`: `model` is a model folder, a trained registry name (runs/NAME), an untrained
    registry name (exported freshly initialised, with a note saying so), `inception`, `vggish`, or
    None (the shipped default). `fresh` overrides the size of a freshly initialised model."""
    if fmt != "onnx":
        raise VtagError(f"--format {fmt}: only onnx is supported")
    require_onnx()
    if model in EXTRACTORS:
        return export_extractor(str(model), out, int8=int8, random_weights=random_weights, frame_size=frame_size,
                                int4=int4)
    from vtag.models.registry import MODELS
    from vtag.models.storage import load_model, resolve_model_dir

    trained = model is None or Path(model).exists() or str(model) not in MODELS
    if not trained:
        try:
            resolve_model_dir(model)
            trained = True
        except VtagError:
            pass
    if trained:
        directory = resolve_model_dir(model)
        net, meta = load_model(directory)
        return export_fusion(net.eval(), out, int8=int8, meta=meta, source=str(directory), int4=int4)
    net = fresh_model(str(model), **fresh)
    note = "freshly initialised, untrained weights: the scores are NOT meaningful (for testing the export)"
    return export_fusion(net, out, int8=int8, int4=int4, meta={"vocabulary": "2018" if net.config.num_classes == 3862 else None},
                         source=f"registry:{model}", note=note)
