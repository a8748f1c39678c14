"""A model is only ever asked about its own vocabulary: records pick the shipped model of theirs,
--vocab picks it for raw videos, and a model of the other vocabulary is refused in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vtag.errors import VtagError
from vtag.io.records import YT8MRecord, write_records
from vtag.io.vocab import load_vocabulary
from vtag.models.registry import create_model
from vtag.models.storage import DEFAULT_MODEL_DIRS, save_model
from vtag.tasks.classify import classify_paths
from vtag.tasks.evaluate import evaluate

REPO = Path(__file__).resolve().parents[2]
SHIPPED_2017 = (DEFAULT_MODEL_DIRS["2017"] / "config.json").is_file()
needs_2017 = pytest.mark.skipif(not SHIPPED_2017, reason=f"no shipped 2017 head in {DEFAULT_MODEL_DIRS['2017']}")


def run_vtag(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vtag", *args], capture_output=True, text=True, cwd=REPO,
                          env=os.environ.copy(), timeout=300)


def records(schema: str, count: int = 12, labels=(5, 4100)) -> list[YT8MRecord]:
    rng = np.random.default_rng(0)
    wanted = [c for c in labels if schema == "2017" or c < 3862]
    return [YT8MRecord(f"{schema}-{i}", np.array(wanted, np.int64), rng.normal(size=1024).astype(np.float32),
                       rng.normal(size=128).astype(np.float32), schema=schema) for i in range(count)]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vocab")
    write_records(folder / "r2017.tfrecord", records("2017"))
    write_records(folder / "r2018.tfrecord", records("2018"))
    torch.manual_seed(0)
    save_model(create_model("fc-early-fusion", num_classes=3862, hidden=16), folder / "m2018", extra={"vocabulary": "2018"})
    save_model(create_model("fc-early-fusion", num_classes=4716, hidden=16), folder / "m2017", extra={"vocabulary": "2017"})
    return folder


def test_a_2018_model_is_never_asked_about_2017_records(files):
    with pytest.raises(VtagError, match=r"records use the 2017 vocabulary .* outputs the 2018 one: leave out --model"):
        list(classify_paths([files / "r2017.tfrecord"], model=files / "m2018", device="cpu"))
    with pytest.raises(VtagError, match=r"records use the 2017 vocabulary .* outputs the 2018 one"):
        evaluate([str(files / "r2017.tfrecord")], model=str(files / "m2018"), device="cpu")
    with pytest.raises(VtagError, match=r"records use the 2018 vocabulary .* outputs the 2017 one"):
        evaluate([str(files / "r2018.tfrecord")], model=str(files / "m2017"), device="cpu")


def test_vocab_that_contradicts_the_records_is_refused(files):
    with pytest.raises(VtagError, match=r"records use the 2017 vocabulary .*, not --vocab 2018"):
        list(classify_paths([files / "r2017.tfrecord"], device="cpu", vocabulary="2018"))
    with pytest.raises(VtagError, match=r"--vocab 2019: use 2017 .* or 2018"):
        list(classify_paths([files / "r2018.tfrecord"], device="cpu", vocabulary="2019"))


def test_a_model_of_the_matching_vocabulary_is_used(files):
    got = list(classify_paths([files / "r2017.tfrecord"], model=files / "m2017", device="cpu", top_k=3))
    assert len(got) == 12 and all(len(p.labels) == 3 for p in got)
    assert evaluate([str(files / "r2017.tfrecord")], model=str(files / "m2017"), device="cpu")["vocabulary"] == "2017"


@needs_2017
def test_without_a_model_each_record_file_gets_the_shipped_model_of_its_vocabulary(files):
    vocabularies = {"2017": load_vocabulary("2017"), "2018": load_vocabulary("2018")}
    got = list(classify_paths([files / "r2018.tfrecord", files / "r2017.tfrecord"], device="cpu", top_k=20))
    assert len(got) == 24
    for p in got:  # ids and names agree in the file's own vocabulary (the same name has other ids in the other)
        vocabulary = vocabularies["2017" if "2017" in p.path else "2018"]
        assert all(vocabulary.name(label.id) == label.name for label in p.labels)
    assert evaluate([str(files / "r2017.tfrecord")], device="cpu")["vocabulary"] == "2017"


@needs_2017
def test_cli_eval_refuses_in_one_line_and_picks_the_2017_head(files):
    refused = run_vtag("eval", str(files / "r2017.tfrecord"), "--model", str(files / "m2018"))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--model" in lines[0] and "2017" in lines[0]
    scored = run_vtag("eval", str(files / "r2017.tfrecord"), "--json")
    assert scored.returncode == 0, scored.stderr
    assert '"videos": 12' in scored.stdout


@needs_2017
def test_vocab_2017_on_a_video_prints_2017_names(tmp_path):
    from media_factory import make_media

    clip = make_media(tmp_path / "clip.mp4", duration_s=2.0)
    done = run_vtag("classify", str(clip), "--vocab", "2017", "--random-weights", "--json", "--top-k", "10", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    import json

    line = json.loads([x for x in done.stdout.splitlines() if x.startswith("{")][0])
    vocabulary = load_vocabulary("2017")
    assert len(line["labels"]) == 10 and all(vocabulary.name(label["id"]) == label["name"] for label in line["labels"])
    refused = run_vtag("classify", str(clip), "--vocab", "2017", "--model", str(DEFAULT_MODEL_DIRS["2018"]),
                       "--random-weights", "--device", "cpu")
    assert refused.returncode == 2 and "pass --vocab 2018" in refused.stderr


def test_train_refuses_2017_training_records_with_2018_validation_records(files, tmp_path):
    from vtag.tasks.train import TrainConfig, train

    config = TrainConfig(train=[str(files / "r2017.tfrecord")], valid=[str(files / "r2018.tfrecord")],
                         model="fc-early-fusion", epochs=1, out=str(tmp_path / "run"), device="cpu")
    with pytest.raises(VtagError, match="--train records use the 2017 vocabulary but the --valid ones"):
        train(config)
    assert not (tmp_path / "run" / "last").exists()


def test_memory_refuses_records_of_the_other_vocabulary(files, tmp_path):
    from vtag.tasks.remember import remember

    with pytest.raises(VtagError, match="records use the 2017 vocabulary"):
        remember([str(files / "r2017.tfrecord")], tmp_path / "out", model=str(files / "m2018"), dim=4)
