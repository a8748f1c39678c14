"""ONNX export (vtag/models/export.py): every registry model, the memory, int8 and the extractors against PyTorch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnx", reason="onnx not installed: pip install 'vtag[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed: pip install 'vtag[onnx]'")

from vtag.models.ensemble import ensemble_of
from vtag.models.export import ScoringGraph, export_extractor, extractor_graph, to_onnx
from vtag.models.registry import MODELS, create_model

SMALL = {"num_classes": 40, "hidden": 64, "attention_dim": 32, "num_heads": 4}
SAMPLE = "examples/yt8m-2018-sample.tfrecord"



def session(proto):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def torch_probabilities(model, visual, audio):
    with torch.no_grad():
        return torch.sigmoid(model(torch.from_numpy(visual), torch.from_numpy(audio)).double()).numpy()


def inputs(model, batch, seed=0):
    rng = np.random.default_rng(seed)
    dv, da = model.config.input_dims
    return rng.normal(0, 1, (batch, dv)).astype(np.float32), rng.normal(0, 1, (batch, da)).astype(np.float32)


def check_parity(model, tolerance=1e-4):
    model.eval()
    example = tuple(torch.from_numpy(x) for x in inputs(model, 2))
    sess = session(to_onnx(ScoringGraph(model), example, ["visual", "audio"], "probabilities"))
    assert [i.name for i in sess.get_inputs()] == ["visual", "audio"]
    visual, audio = inputs(model, 7, seed=1)  # another batch size than the export's: the axis is dynamic
    got = sess.run(None, {"visual": visual, "audio": audio})[0]
    want = torch_probabilities(model, visual, audio)
    assert got.shape == want.shape == (7, model.config.num_classes)
    assert np.abs(got - want).max() < tolerance
    return got, want


@pytest.mark.parametrize("name", list(MODELS))
def test_every_registry_model_matches_pytorch(name):
    torch.manual_seed(0)
    got, _ = check_parity(create_model(name, **SMALL))
    assert got.std(axis=0).mean() > 1e-3  # the scores depend on the inputs


def test_mixture_of_experts_input_norm_and_ensemble_with_memory():
    torch.manual_seed(0)
    check_parity(create_model("fc-early-fusion", experts=3, input_norm=True, **SMALL))
    from vtag.models.attach import attach_memory

    members = [create_model("fc-residual-gated-early-fusion", **SMALL).eval() for _ in range(2)]
    ensemble = ensemble_of(members)
    rng = np.random.default_rng(0)
    visual, audio = rng.normal(0, 1, (200, 1024)), rng.normal(0, 1, (200, 128))
    labels = [rng.choice(40, size=rng.integers(0, 5), replace=False) for _ in range(200)]
    for bits in (4, 8):
        hybrid = attach_memory(ensemble, visual, audio, labels, dim=33, bits=bits, k=5)
        _, want = check_parity(hybrid)
        plain = torch_probabilities(ensemble.eval(), *inputs(hybrid, 7, seed=1))
        assert np.abs(want - plain).max() > 1e-3  # the memory is in the graph, not dropped


def top20(scores):
    return np.argsort(-scores, axis=1, kind="stable")[:, :20]


def export_fusion_to(model, out, int8):
    from vtag.models.export import export_fusion

    return export_fusion(model, out, int8=int8, meta={"vocabulary": "2018"}).directory


def test_int8_runs_and_stays_close(tmp_path, repo_root):
    torch.manual_seed(0)
    model = create_model("fc-residual-gated-early-fusion", hidden=256, num_classes=3862).eval()
    fp32 = export_fusion_to(model, tmp_path / "fp32", int8=False)
    int8 = export_fusion_to(model, tmp_path / "int8", int8=True)
    import onnx

    ops = {node.op_type for node in onnx.load(str(int8 / "model.onnx")).graph.node}
    assert "MatMulInteger" in ops and "Gemm" not in ops
    assert (int8 / "model.onnx").stat().st_size < 0.3 * (fp32 / "model.onnx").stat().st_size
    from vtag.tasks.evaluate import predict

    sample = str(repo_root / SAMPLE)
    scores = {d.name: predict([sample], model=d, runtime="onnx", dtype=np.float64)[0] for d in (fp32, int8)}
    assert np.abs(scores["fp32"] - scores["int8"]).max() < 0.05
    logit = {k: np.log(v) - np.log1p(-v) for k, v in scores.items()}
    assert np.corrcoef(logit["fp32"].ravel(), logit["int8"].ravel())[0, 1] > 0.99
    assert not np.array_equal(scores["fp32"], scores["int8"])  # the weights did change


@pytest.mark.parametrize("kind", ["inception", "vggish"])
def test_extractors_match_pytorch_on_random_weights(kind, tmp_path):
    result = export_extractor(kind, tmp_path, random_weights=True, frame_size=(72, 96))
    meta = json.loads((tmp_path / "export.json").read_text())
    assert meta["random_weights"] is True and "NOT meaningful" in meta["note"]
    graph, (input_name, _) = extractor_graph(kind, random_weights=True)
    rng = np.random.default_rng(0)
    if kind == "inception":
        x = rng.integers(0, 256, (2, 72, 96, 3), dtype=np.uint8)
    else:
        x = rng.normal(-2, 1, (3, 96, 64)).astype(np.float32)
    sess = ort.InferenceSession(str(result.directory / "model.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {input_name: x})[0]
    with torch.no_grad():
        want = graph(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-3 * max(1.0, np.abs(want).max())
