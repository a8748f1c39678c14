"""vtag classify: records, media files, output formats, and the errors a user sees."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from media_factory import make_media
from vtag.tasks.classify import classify_paths, kaggle_rows
from vtag.errors import VtagError
from vtag.io.records import read_records

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "yt8m-2018-sample.tfrecord"


def run_vtag(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vtag", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=REPO, timeout=300)


def test_records_get_one_prediction_each_sorted_by_score(tiny_model):
    records = list(read_records([SAMPLE]))
    predictions = list(classify_paths([SAMPLE], model=tiny_model, top_k=4, device="cpu"))
    assert [p.source for p in predictions] == [r.id for r in records]
    for p in predictions:
        scores = [label.score for label in p.labels]
        assert len(scores) == 4 and scores == sorted(scores, reverse=True)
        assert all(0.0 <= s <= 1.0 for s in scores)
        assert all(label.name for label in p.labels)


def test_top_labels_are_the_highest_scores(tiny_model):
    from vtag.tasks.classify import Tagger

    tagger = Tagger(tiny_model, device="cpu")
    record = next(iter(read_records([SAMPLE])))
    scores = tagger.scores(record.rgb[None], record.audio[None])[0]
    labels = tagger.top_labels(scores, 5)
    assert [label.id for label in labels] == list(np.argsort(-scores, kind="stable")[:5])


def test_kaggle_format(tiny_model):
    predictions = list(classify_paths([SAMPLE], model=tiny_model, top_k=20, device="cpu"))
    rows = list(kaggle_rows(predictions))
    assert rows[0] == "VideoId,LabelConfidencePairs\n"
    assert len(rows) == len(predictions) + 1
    video_id, pairs = rows[1].rstrip("\n").split(",")
    assert video_id == predictions[0].source
    values = pairs.split(" ")
    assert len(values) == 40
    scores = [float(s) for s in values[1::2]]
    assert scores == sorted(scores, reverse=True)
    assert all(0 <= int(i) < 3862 for i in values[0::2])


def test_cli_json_and_kaggle(tiny_model, tmp_path):
    result = run_vtag("classify", str(SAMPLE), "--model", str(tiny_model), "--json", "--top-k", "2")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == len(list(read_records([SAMPLE])))
    assert {"source", "labels", "model", "missing"} <= set(lines[0])
    assert set(lines[0]["labels"][0]) >= {"id", "name", "score"}

    out = tmp_path / "submission.csv"
    result = run_vtag("classify", str(SAMPLE), "--model", str(tiny_model), "--format", "kaggle", "-o", str(out), "--top-k", "20")
    assert result.returncode == 0, result.stderr
    assert out.read_text().startswith("VideoId,LabelConfidencePairs\n")


def test_quick_start_with_the_shipped_model():
    """The README's quick start: real labels from the default model, offline, no extractor weights."""
    result = run_vtag("classify", str(SAMPLE), "--top-k", "3", "--json")
    assert result.returncode == 0, result.stderr
    first = json.loads(result.stdout.splitlines()[0])
    assert len(first["labels"]) == 3 and "random_weights" not in first


def test_a_record_file_prints_one_line_per_record(tiny_model):
    result = run_vtag("classify", str(SAMPLE), "--model", str(tiny_model), "--top-k", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    records = list(read_records(SAMPLE))
    assert len(lines) == len(records) == 293
    first_id, labels = lines[0].split("  ", 1)
    assert first_id == records[0].id and len(re.findall(r" [01]\.\d{3}(?:, |$)", labels)) == 2


@pytest.mark.parametrize("args, needle", [
    (["classify", "does-not-exist.mp4"], "does-not-exist.mp4: no such file"),
    (["classify", str(SAMPLE), "--model", "no-such-model"], "no-such-model"),
    (["classify", str(SAMPLE), "--format", "kaggle"], "-o FILE"),
    (["classify", str(SAMPLE), "--device", "tpu"], "unknown device"),
])
def test_user_errors_are_one_line(args, needle):
    result = run_vtag(*args)
    assert result.returncode == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_video_without_weights_names_the_weights_command(tmp_path, tiny_model):
    clip = make_media(tmp_path / "clip.mp4", duration_s=1.0)
    result = run_vtag("classify", str(clip), "--model", str(tiny_model), env={"VTAG_CACHE": str(tmp_path / "empty-cache")})
    assert result.returncode == 2
    assert "vtag weights" in result.stderr and "Traceback" not in result.stderr


def test_video_with_random_weights_is_marked(tmp_path, tiny_model):
    clip = make_media(tmp_path / "clip.mp4", duration_s=2.0, audio=False)
    result = run_vtag("classify", str(clip), "--model", str(tiny_model), "--random-weights", "--json", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["random_weights"] is True and out["missing"] == ["audio"]
    assert "NOT meaningful" in result.stderr


def test_folder_input_points_to_batch(tmp_path, tiny_model):
    with pytest.raises(VtagError, match="vtag batch"):
        list(classify_paths([tmp_path], model=tiny_model, device="cpu"))


def test_ctrl_c_exits_130_without_a_traceback(tmp_path, tiny_model):
    import signal
    import time

    clip = make_media(tmp_path / "long.mp4", duration_s=60.0, size=(320, 240), fps=10, audio=False)
    proc = subprocess.Popen([sys.executable, "-m", "vtag", "classify", str(clip), "--model", str(tiny_model),
                             "--random-weights", "--device", "cpu"], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(3)  # the extractor is loading or running: well inside the minute of video
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and out == ""
