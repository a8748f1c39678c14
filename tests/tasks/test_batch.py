"""vtag batch: every kind of bad input recorded as failed while the batch goes on; resuming after an
interruption neither duplicates nor loses a file; results lines are never torn."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from batch_helpers import batch_command, results_records, silent_clips
from media_factory import make_broken, make_media
from vtag.tasks.batch import ResultsFile, find_media, run_batch

REPO = Path(__file__).resolve().parents[2]


GOOD = {  # name -> what the file lacks (None: complete)
    "good.mp4": None,
    "video_only.mp4": "audio",
    "audio_only.m4a": "video",
    "one_frame.mp4": "audio",
    "clip.mkv": None,
    "clip.webm": None,
    "clip.avi": None,
    "vidéo 日本語.mp4": None,
    "uhd_4k.mp4": "audio",
}
BAD = ["zero_bytes.mp4", "truncated.mp4", "text.mp4"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    make_media(folder / "good.mp4", duration_s=2.0)
    make_media(folder / "video_only.mp4", duration_s=2.0, audio=False)
    make_media(folder / "audio_only.m4a", duration_s=2.0, size=None)
    make_media(folder / "one_frame.mp4", duration_s=0.04, audio=False)
    for suffix in ("mkv", "webm", "avi"):
        make_media(folder / f"clip.{suffix}", duration_s=2.0)
    make_media(folder / "vidéo 日本語.mp4", duration_s=2.0)
    make_media(folder / "uhd_4k.mp4", duration_s=1.0, fps=2, size=(3840, 2160), audio=False, crf=35)
    make_broken(folder / "zero_bytes.mp4", "empty")
    make_broken(folder / "truncated.mp4", "truncated", source=folder / "good.mp4")
    make_broken(folder / "text.mp4", "text")
    (folder / "notes.txt").write_text("not a media suffix: ignored")
    return folder


def read_lines(path: Path) -> dict[str, dict]:
    lines = results_records(path, "jsonl")
    by_path = {Path(entry["path"]).name: entry for entry in lines}
    assert len(by_path) == len(lines), "a file appears twice in the results"
    return by_path


def test_every_bad_input_fails_alone_and_the_batch_goes_on(clips, tiny_model, tmp_path):
    out = tmp_path / "results.jsonl"
    summary = run_batch([clips], out, workers=2, model=tiny_model, device="cpu", random_weights=True, top_k=3)
    assert (summary.total, summary.done, summary.failed) == (len(GOOD) + len(BAD), len(GOOD), len(BAD))
    results = read_lines(out)
    assert set(results) == set(GOOD) | set(BAD)
    for name, lacks in GOOD.items():
        entry = results[name]
        assert "error" not in entry, entry
        assert len(entry["labels"]) == 3 and {"id", "name", "score"} <= set(entry["labels"][0])
        assert entry["missing"] == ([lacks] if lacks else [])
        assert entry["random_weights"] is True
    for name in BAD:
        error = results[name]["error"]
        assert name in error and "\n" not in error

    # A rerun has nothing to do; --retry-failed retries failures without duplicating lines.
    again = run_batch([clips], out, workers=0, model=tiny_model, device="cpu", random_weights=True)
    assert (again.skipped, again.done, again.failed, again.failed_before) == (len(GOOD), 0, len(BAD), len(BAD))
    retried = run_batch([clips], out, workers=0, model=tiny_model, device="cpu", random_weights=True, retry_failed=True)
    assert (retried.skipped, retried.failed) == (len(GOOD), len(BAD))
    assert set(read_lines(out)) == set(GOOD) | set(BAD)


def test_csv_results_and_exit_code(tiny_model, tmp_path):
    import csv

    folder = silent_clips(tmp_path / "clips", ["good, with comma.mp4"], duration_s=1.0)
    make_broken(folder / "text.mp4", "text")
    out = tmp_path / "results.csv"
    result = subprocess.run(batch_command(folder, out, tiny_model), capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr  # documented: 1 when some files failed
    rows = list(csv.reader(out.open(encoding="utf-8")))
    assert rows[0] == ["path", "labels", "error"]
    assert {Path(r[0]).name: bool(r[2]) for r in rows[1:]} == {"good, with comma.mp4": False, "text.mp4": True}
    assert "1 tagged, 1 failed" in result.stderr


def test_torn_last_line_is_cut_on_resume(tmp_path):
    out = tmp_path / "results.jsonl"
    out.write_text('{"path": "a.mp4", "labels": []}\n{"path": "b.mp4", "lab')
    finished, failed = ResultsFile(out).prepare(retry_failed=False)
    assert {Path(p).name for p in finished} == {"a.mp4"} and not failed
    assert out.read_text() == '{"path": "a.mp4", "labels": []}\n'


def test_killed_batch_resumes_without_duplicates_or_losses(tmp_path, tiny_model):
    names = [f"c{i:02d}.mp4" for i in range(6)]
    folder = silent_clips(tmp_path / "clips", names)
    out = tmp_path / "results.jsonl"
    cmd = batch_command(folder, out, tiny_model)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and (not out.exists() or out.read_text().count("\n") < 2):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = out.read_text().count("\n")
    assert 2 <= done_before < len(names)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert f"{done_before} already done" in result.stderr
    assert set(read_lines(out)) == set(names)


def test_folder_of_thousands_of_files(tmp_path, tiny_model):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(1500):
        (folder / f"broken{i:04d}.mp4").write_bytes(b"")
    make_media(folder / "real.mp4", duration_s=1.0, audio=False)
    out = tmp_path / "results.jsonl"
    summary = run_batch([folder], out, workers=0, model=tiny_model, device="cpu", random_weights=True)
    assert (summary.total, summary.done, summary.failed) == (1501, 1, 1500)
    assert len(read_lines(out)) == 1501


def test_find_media_recursive_and_filters(tmp_path):
    (tmp_path / "sub").mkdir()
    for rel in ["a.mp4", "b.MKV", "c.txt", "sub/d.webm", ".hidden/e.mp4"]:
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    assert [p.name for p in find_media([tmp_path])] == ["a.mp4", "b.MKV"]
    assert [p.name for p in find_media([tmp_path], recursive=True)] == ["a.mp4", "b.MKV", "d.webm"]


def test_a_file_that_breaks_inference_fails_alone(tmp_path, tiny_model, monkeypatch):
    from vtag.features.extract import FeatureExtractor

    folder = tmp_path / "clips"
    folder.mkdir()
    make_media(folder / "a.mp4", duration_s=1.0, audio=False)
    make_media(folder / "b_huge.mp4", duration_s=1.0, size=(160, 96), audio=False)
    real = FeatureExtractor.preprocessed_features
    calls = []

    def preprocessed_features(self, inputs):
        calls.append(len(inputs))
        if len(calls) == 2:  # workers=0 tags in name order: the second file is b_huge.mp4
            raise MemoryError("simulated: out of memory")
        return real(self, inputs)

    monkeypatch.setattr(FeatureExtractor, "preprocessed_features", preprocessed_features)
    out = tmp_path / "results.jsonl"
    summary = run_batch([folder], out, workers=0, model=tiny_model, device="cpu", random_weights=True)
    results = read_lines(out)
    assert (summary.done, summary.failed) == (1, 1)
    assert "MemoryError" in results["b_huge.mp4"]["error"] and "labels" in results["a.mp4"]
