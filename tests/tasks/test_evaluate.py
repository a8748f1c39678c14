"""evaluate() and `vtag eval` on a tiny record set with a tiny saved model; the shipped default model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vtag.errors import VtagError
from vtag.tasks.evaluate import evaluate, predict
from vtag.tasks.metrics import EvaluationMetrics
from vtag.io.records import YT8MRecord, write_records

KEYS = {"gap", "hit_at_1", "perr", "map", "f1_micro", "f1_macro", "threshold", "videos"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path, list[YT8MRecord]]:
    from vtag.models.registry import create_model
    from vtag.models.storage import save_model

    folder = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    records = [YT8MRecord(f"e{i:03d}", np.array(sorted(rng.choice(3862, 1 + i % 4, replace=False)), np.int64),
                          rng.normal(size=1024).astype(np.float32), rng.normal(size=128).astype(np.float32))
               for i in range(40)]
    write_records(folder / "tiny.tfrecord", records)
    torch.manual_seed(0)
    model = create_model("attend-fusion-no-attention", hidden=8)
    save_model(model, folder / "model", extra={"vocabulary": "2018"})
    return folder / "tiny.tfrecord", folder / "model", records


def test_evaluate_matches_metrics_on_the_model_outputs(tiny):
    from vtag.models.storage import load_model

    records_file, model_dir, records = tiny
    got = evaluate([str(records_file)], model=str(model_dir), device="cpu", batch_size=7)
    assert KEYS <= set(got) and got["videos"] == 40 and got["model_name"] == "attend-fusion-no-attention"

    model, _ = load_model(model_dir)
    model.eval()
    with torch.no_grad():
        scores = torch.sigmoid(model(torch.from_numpy(np.stack([r.rgb for r in records])),
                                     torch.from_numpy(np.stack([r.audio for r in records]))))
    metrics = EvaluationMetrics(3862)
    metrics.accumulate(scores, [r.labels for r in records])
    expected = metrics.summary()
    for key in KEYS:
        assert got[key] == pytest.approx(expected[key], abs=1e-6), key


def test_predict_returns_scores_and_labels(tiny):
    records_file, model_dir, records = tiny
    scores, labels, meta = predict(str(records_file), model=model_dir, device="cpu")
    assert scores.shape == (40, 3862) and scores.dtype == np.float32
    assert all(np.array_equal(a, r.labels) for a, r in zip(labels, records))
    assert meta["vocabulary"] == "2018"


def test_threshold_changes_only_f1(tiny):
    records_file, model_dir, _ = tiny
    low = evaluate(str(records_file), model=str(model_dir), device="cpu", threshold=0.01)
    high = evaluate(str(records_file), model=str(model_dir), device="cpu", threshold=0.99)
    assert low["gap"] == high["gap"] and low["threshold"] == 0.01
    assert low["f1_micro"] != high["f1_micro"]


def test_errors(tiny, tmp_path, monkeypatch):
    records_file, model_dir, _ = tiny
    monkeypatch.chdir(tmp_path)  # no runs/ here
    with pytest.raises(VtagError, match="no trained weights"):
        evaluate(str(records_file), model="attend-fusion", device="cpu")
    with pytest.raises(VtagError, match="threshold"):
        evaluate(str(records_file), model=str(model_dir), device="cpu", threshold=2.0)
    unlabelled = tmp_path / "test.tfrecord"
    write_records(unlabelled, [YT8MRecord("u", None, np.zeros(1024, np.float32), np.zeros(128, np.float32))])
    with pytest.raises(VtagError, match="no labels"):
        evaluate(str(unlabelled), model=str(model_dir), device="cpu")


def test_cli_eval_json_and_table(tiny):
    from typer.testing import CliRunner

    from vtag.cli import app

    records_file, model_dir, _ = tiny
    runner = CliRunner()
    result = runner.invoke(app, ["eval", str(records_file), "--model", str(model_dir), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert set(payload) == KEYS | {"model_name", "model", "runtime"} and payload["videos"] == 40
    result = runner.invoke(app, ["eval", str(records_file), "--model", str(model_dir), "--threshold", "0.3"])
    assert result.exit_code == 0, result.output
    assert "GAP@20" in result.output and "threshold 0.3" in result.output and "macro" in result.output


def test_default_model_scores_the_sample_shard(repo_root):
    default = repo_root / "weights" / "default"
    sample = repo_root / "examples" / "yt8m-2018-sample.tfrecord"
    if not (default / "model.safetensors").is_file():
        pytest.skip(f"no shipped default model in {default}")
    got = evaluate(str(sample), device="cpu")
    assert got["videos"] > 200
    # the shipped model never saw this shard (a copy of valid/validate0100); RESULTS.md has its score
    assert got["gap"] > 0.6


def test_frame_level_records_are_pooled(tiny, tmp_path):
    _, model_dir, _ = tiny
    rng = np.random.default_rng(1)
    frames = [YT8MRecord(f"f{i}", np.array([i]), rng.uniform(-1, 1, (5 + i, 1024)).astype(np.float32),
                         rng.uniform(-1, 1, (5 + i, 128)).astype(np.float32), level="frame") for i in range(3)]
    path = tmp_path / "frames.tfrecord"
    write_records(path, frames, level="frame")
    scores, labels, _ = predict(str(path), model=str(model_dir), device="cpu")
    assert scores.shape == (3, 3862) and [x.tolist() for x in labels] == [[0], [1], [2]]
