"""`vtag transfer`: a 2017 head learns from 2017 records on a frozen 2018 trunk; the CLI writes a
head model that `vtag eval` and `vtag classify` use with 2017 names."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vtag.errors import VtagError
from vtag.io.records import YT8MRecord, write_records
from vtag.io.vocab import load_vocabulary
from vtag.models.registry import create_model
from vtag.models.storage import load_model, save_model
from vtag.tasks.transfer import transfer

CLASSES_2017 = [3900, 4100, 4700, 10, 200]  # the first three have no 2018 counterpart by index


def records_2017(count: int, seed: int) -> list[YT8MRecord]:
    """Videos whose one label is written in their features (a direction per class), so a head can
    learn it from the trunk's features."""
    rng = np.random.default_rng(seed)
    directions = np.random.default_rng(99).normal(size=(len(CLASSES_2017), 1024)).astype(np.float32)
    out = []
    for i in range(count):
        k = int(rng.integers(len(CLASSES_2017)))
        rgb = directions[k] + 0.3 * rng.normal(size=1024).astype(np.float32)
        out.append(YT8MRecord(f"v{seed}-{i}", np.array([CLASSES_2017[k]], np.int64), rgb,
                              rng.normal(size=128).astype(np.float32), schema="2017"))
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("transfer")
    torch.manual_seed(0)
    save_model(create_model("fc-residual-gated-early-fusion", hidden=64).eval(), folder / "trunk",
               extra={"vocabulary": "2018"})
    write_records(folder / "train.tfrecord", records_2017(300, 1))
    write_records(folder / "valid.tfrecord", records_2017(100, 2))
    return folder


def test_the_head_learns_the_2017_classes_and_says_its_vocabulary(setup):
    history = []
    result = transfer(str(setup / "trunk"), "2017", [str(setup / "train.tfrecord")], setup / "head",
                      valid=[str(setup / "valid.tfrecord")], epochs=15, lr=3e-2, progress=history.append)
    assert result.train_videos == 300 and result.valid_videos == 100 and len(history) == 15
    assert history[-1]["loss"] < history[0]["loss"] / 2
    assert history[-1]["gap"] > 0.95 > 0.5 > history[0]["gap"]  # a random trunk still separates 5 directions
    model, meta = load_model(setup / "head")
    assert meta["vocabulary"] == "2017" and model.config.num_classes == 4716 and meta["trunk"] == "../trunk"
    # the shipped vocabularies: 3,328 names equal, 291 more by the loose rules (`Games` = `Game`)
    assert meta["transferred_from"]["classes_matched_by_name"] == 3619


def test_a_head_model_cannot_be_a_trunk_and_unlabelled_records_are_refused(setup, tmp_path):
    if not (setup / "head").is_dir():
        transfer(str(setup / "trunk"), "2017", [str(setup / "train.tfrecord")], setup / "head", epochs=1)
    with pytest.raises(VtagError, match="is itself a head model"):
        transfer(str(setup / "head"), "2017", [str(setup / "train.tfrecord")], tmp_path / "x", epochs=1)
    unlabelled = [YT8MRecord("t", None, np.zeros(1024, np.float32), np.zeros(128, np.float32), schema="2017")]
    write_records(tmp_path / "test.tfrecord", unlabelled)
    with pytest.raises(VtagError, match="hold no labelled videos"):
        transfer(str(setup / "trunk"), "2017", [str(tmp_path / "test.tfrecord")], tmp_path / "y", epochs=1)


def test_cli_transfer_then_eval_and_classify_speak_2017(setup, tmp_path):
    from vtag.cli import app

    runner = CliRunner()
    out = tmp_path / "head2017"
    (tmp_path / "trunk").symlink_to(setup / "trunk", target_is_directory=True)
    done = runner.invoke(app, ["transfer", "--model", str(tmp_path / "trunk"), "--train", str(setup / "train.tfrecord"),
                               "--valid", str(setup / "valid.tfrecord"), "--out", str(out), "--epochs", "12",
                               "--lr", "3e-2"])
    assert done.exit_code == 0, done.output
    said = " ".join(done.output.split())  # the console wraps long lines
    assert "epoch 12: loss" in said and "valid GAP" in said and "a 2017 head trained on 300 videos" in said

    scored = runner.invoke(app, ["eval", str(setup / "valid.tfrecord"), "--model", str(out), "--json"])
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.output.strip().splitlines()[-1])["gap"] > 0.9

    tagged = runner.invoke(app, ["classify", str(setup / "valid.tfrecord"), "--model", str(out), "--json", "--top-k", "1"])
    assert tagged.exit_code == 0, tagged.output
    names_2017 = {load_vocabulary("2017").name(c) for c in CLASSES_2017}
    lines = [json.loads(line) for line in tagged.output.splitlines() if line.startswith("{")]
    assert len(lines) == 100 and sum(line["labels"][0]["name"] in names_2017 for line in lines) >= 90


def test_the_cli_defaults_are_the_library_ones():
    """`vtag transfer` repeats the head's optimiser defaults (the CLI does not import the training code
    at start-up); a change to one must be a change to both."""
    import inspect

    from vtag.cli.transfer import transfer_command
    from vtag.tasks.transfer import HEAD_LR, HEAD_WEIGHT_DECAY, fit_head

    options = inspect.signature(transfer_command).parameters
    library = inspect.signature(transfer).parameters, inspect.signature(fit_head).parameters
    for name, value in (("lr", HEAD_LR), ("weight_decay", HEAD_WEIGHT_DECAY)):
        assert options[name].default.default == value
        assert all(parameters[name].default == value for parameters in library)
