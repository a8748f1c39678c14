"""Training curves: metrics.csv and TensorBoard event files from `vtag train`, and their picture."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vtag.errors import VtagError
from vtag.io.tfevents import EventWriter, read_scalars
from vtag.tasks.train import TrainConfig, train
from vtag.tasks.training_log import read_history

sys.path.insert(0, str(Path(__file__).parent))
from test_train import MODEL, TINY, write_tiny  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("curves")
    train_file, valid_file = write_tiny(folder / "train.tfrecord", 96, 1), write_tiny(folder / "valid.tfrecord", 32, 2)
    torch.set_num_threads(1)
    settings = dict(train=[str(train_file)], valid=[str(valid_file)], model=MODEL, epochs=2, lr=1e-2, batch_size=16,
                    out=str(folder / "run"), device="cpu", model_overrides=dict(TINY),
                    keep_optimizer=True)  # extended below
    train(TrainConfig(**settings), log=lambda _: None)
    result = train(TrainConfig(**{**settings, "epochs": 4, "resume": True}), log=lambda _: None)  # a resumed run
    return folder / "run", result


def test_metrics_csv_holds_every_epoch_once(run):
    run_dir, result = run
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    for row, record in zip(rows, result.history):
        assert float(row["loss"]) == pytest.approx(record["loss"])
        assert float(row["valid_gap"]) == pytest.approx(record["valid"]["gap"])
    assert read_history(run_dir)[3]["valid_gap"] == pytest.approx(result.history[3]["valid"]["gap"])


def test_event_files_read_back(run):
    run_dir, result = run
    files = sorted(run_dir.glob("events.out.tfevents.*"))
    assert len(files) == 2  # one per process: the first run and the resumed one
    steps = {}
    for path in files:
        version, scalars = read_scalars(path)
        assert version == "brain.Event:2"
        for step, tag, value in scalars:
            steps.setdefault(tag, {})[step] = value
    assert sorted(steps["train/loss"]) == [1, 2, 3, 4]
    for record in result.history:
        assert steps["train/loss"][record["epoch"]] == pytest.approx(record["loss"], rel=1e-6)
        assert steps["valid/gap"][record["epoch"]] == pytest.approx(record["valid"]["gap"], rel=1e-6)


def test_event_file_reads_in_tensorboard(run):
    loader = pytest.importorskip("tensorboard.backend.event_processing.event_file_loader",
                                 reason="tensorboard is not installed: checked with vtag's own reader only")
    run_dir, result = run
    seen = {}
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in loader.LegacyEventFileLoader(str(path)).Load():
            for value in event.summary.value:
                seen[(value.tag, event.step)] = value.simple_value
    assert seen[("train/loss", 4)] == pytest.approx(result.history[3]["loss"], rel=1e-6)


def test_torn_event_is_skipped(tmp_path):
    writer = EventWriter(tmp_path)
    writer.scalars(1, {"a": 1.5})
    writer.scalars(2, {"a": 2.5})
    data = writer.path.read_bytes()
    writer.path.write_bytes(data[:-5])
    _, scalars = read_scalars(writer.path)
    assert scalars == [(1, "a", 1.5)]


def test_curves_png_via_report_and_train_plot(run, tmp_path):
    pytest.importorskip("matplotlib", reason="curves need matplotlib (vtag[plot])")
    from PIL import Image
    from typer.testing import CliRunner

    from vtag.cli import app

    run_dir, _ = run
    result = CliRunner().invoke(app, ["report", str(run_dir), "-o", str(tmp_path / "curves.png")])
    assert result.exit_code == 0, result.output
    png = tmp_path / "curves.png"
    assert png.stat().st_size > 10_000
    pixels = np.asarray(Image.open(png).convert("RGB"), np.float64)
    assert pixels.shape[1] >= 800 and pixels.std() > 10
    # coloured lines are drawn (not only black axes on white)
    assert (np.ptp(pixels, axis=2) > 60).sum() > 200


def test_report_of_a_folder_without_metrics(tmp_path):
    with pytest.raises(VtagError, match="metrics.csv"):
        read_history(tmp_path)
