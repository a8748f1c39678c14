"""`--runtime onnx` (vtag/tasks/onnx_runtime.py): exported models scored by onnxruntime in eval, classify and batch."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnx", reason="onnx not installed: pip install 'vtag[onnx]'")
pytest.importorskip("onnxruntime", reason="onnxruntime not installed: pip install 'vtag[onnx]'")

from vtag.errors import VtagError
from vtag.models.export import export
from vtag.models.registry import create_model
from vtag.models.storage import save_model

SAMPLE = "examples/yt8m-2018-sample.tfrecord"



def top20(scores):
    return np.argsort(-scores, axis=1, kind="stable")[:, :20]


def test_shipped_model_same_top20_on_sample(tmp_path, repo_root):
    from vtag.tasks.evaluate import load_features, predict
    from vtag.tasks.onnx_runtime import OnnxScorer

    result = export(None, tmp_path / "default")
    meta = json.loads((tmp_path / "default" / "export.json").read_text())
    assert meta["model"]["members"] == 3 and meta["model"]["memory"]["videos"] == 44915
    assert (tmp_path / "default" / "vocabulary_2018.csv").is_file()
    sample = str(repo_root / SAMPLE)
    want, _, _ = predict([sample], dtype=np.float64, device="cpu")
    visual, audio, _ = load_features([sample], "mean", 3862)
    got = OnnxScorer(result.directory).probabilities(visual, audio)
    assert got.shape == want.shape == (293, 3862)
    assert np.array_equal(top20(got), top20(want))
    assert np.abs(got - want).max() < 1e-4
    # --int4 carries the shipped 4-bit weights over as they are: same labels at a fifth of the size
    int4 = export(None, tmp_path / "int4", int4=True)
    assert int4.weights == "int4" and int4.graph_bytes < 0.25 * result.graph_bytes
    got4 = OnnxScorer(int4.directory).probabilities(visual, audio)
    assert np.array_equal(top20(got4), top20(want))
    assert np.abs(got4 - want).max() < 1e-4


def test_cli_export_and_classify_with_onnx_runtime(tmp_path, repo_root, monkeypatch):
    from typer.testing import CliRunner

    from vtag.cli import app

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    done = runner.invoke(app, ["export", "attend-fusion", "-o", "exp", "--hidden", "64", "--attention-dim", "32",
                               "--num-heads", "4", "--int8"])
    assert done.exit_code == 0, done.output
    assert "untrained" in done.output and "int8" in done.output
    ran = runner.invoke(app, ["classify", str(repo_root / SAMPLE), "--runtime", "onnx", "--model", "exp", "--json"])
    assert ran.exit_code == 0, ran.output
    lines = [json.loads(line) for line in ran.stdout.splitlines()]
    assert len(lines) == 293 and len(lines[0]["labels"]) == 5


def test_model_folder_is_exported_into_the_cache_once(tmp_path, repo_root, monkeypatch):
    from vtag.tasks.evaluate import evaluate

    monkeypatch.setenv("VTAG_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    folder = save_model(create_model("fc-early-fusion", hidden=64), tmp_path / "model", extra={"vocabulary": "2018"})
    sample = str(repo_root / SAMPLE)
    onnx_result = evaluate([sample], model=str(folder), runtime="onnx")
    torch_result = evaluate([sample], model=str(folder), device="cpu")
    assert abs(onnx_result["gap"] - torch_result["gap"]) < 1e-6
    cached = list((tmp_path / "cache" / "onnx").iterdir())
    assert len(cached) == 1 and (cached[0] / "model.onnx").is_file()
    stamp = (cached[0] / "model.onnx").stat().st_mtime_ns
    evaluate([sample], model=str(folder), runtime="onnx")
    assert (cached[0] / "model.onnx").stat().st_mtime_ns == stamp


def test_missing_onnxruntime_is_one_line_naming_the_extra(monkeypatch):
    from vtag.tasks.onnx_runtime import check_runtime

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(VtagError, match=r"pip install 'vtag\[onnx\]'"):
        check_runtime("onnx")
    with pytest.raises(VtagError, match="torch or onnx"):
        check_runtime("tflite")


def test_export_folder_of_an_extractor_is_not_a_fusion_model(tmp_path):
    from vtag.tasks.onnx_runtime import OnnxScorer

    (tmp_path / "export.json").write_text(json.dumps({"format": "vtag-onnx", "kind": "vggish"}))
    with pytest.raises(VtagError, match="not a fusion model"):
        OnnxScorer(tmp_path)
    (tmp_path / "export.json").write_text("{")
    with pytest.raises(VtagError, match="not readable"):
        OnnxScorer(tmp_path)


def test_batch_on_media_with_onnx_runtime(tmp_path, shared_data):
    from vtag.models.export import export_fusion
    from vtag.tasks.batch import run_batch

    media = tmp_path / "media"
    media.mkdir()
    (media / "bikes.mp4").write_bytes((shared_data / "media" / "bikes.mp4").read_bytes())
    torch.manual_seed(0)
    exported = export_fusion(create_model("fc-early-fusion", hidden=64).eval(), tmp_path / "exp",
                             meta={"vocabulary": "2018"}).directory
    summary = run_batch([media], tmp_path / "out.jsonl", workers=0, model=exported, random_weights=True,
                        runtime="onnx", max_frames=4)
    assert summary.done == 1 and summary.failed == 0
    line = json.loads((tmp_path / "out.jsonl").read_text())
    assert len(line["labels"]) == 5 and line["random_weights"] is True
