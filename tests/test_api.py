"""The public API in vtag/__init__.py: what the README's Python example uses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import vtag
from vtag.errors import VtagError

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "yt8m-2018-sample.tfrecord"


def test_import_vtag_loads_no_stage():
    code = "import sys, vtag; print(sorted(m for m in ('torch', 'av', 'vtag.tasks', 'vtag.models') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_classify_a_record_file_with_the_shipped_model():
    predictions = list(vtag.classify(SAMPLE, top_k=3))
    assert len(predictions) == 293  # the shipped shard's videos
    assert all(len(p.labels) == 3 for p in predictions)
    scores = [label.score for label in predictions[0].labels]
    assert scores == sorted(scores, reverse=True) and 0 < scores[-1] <= scores[0] < 1


def test_evaluate_and_load_model_agree_with_the_task_functions():
    from vtag.tasks.evaluate import evaluate

    assert vtag.evaluate(SAMPLE)["gap"] == evaluate(SAMPLE)["gap"]
    model, config = vtag.load_model()
    assert not model.training and config["vocabulary"] == "2018"


def test_train_config_is_reachable_from_the_package():
    from vtag.tasks.train import TrainConfig

    assert vtag.TrainConfig is TrainConfig
    with pytest.raises(AttributeError):
        vtag.no_such_name  # noqa: B018


def test_errors_are_vtag_errors():
    with pytest.raises(VtagError, match="no such file"):
        list(vtag.classify("missing.tfrecord"))
