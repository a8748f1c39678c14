"""vtag batch against hostile folders and outputs: file names a line splitter or an encoder trips on,
folders spelt two ways, two runs on one output, symlink loops, full or read-only disks, formula cells,
a killed parent, huge frames, killed checkpoints. Each test asserts the one line the user sees, the exit
code, and that no result is lost or written twice."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batch_helpers import batch_command, results_records, silent_clips
from media_factory import make_broken, make_media
from vtag.tasks.batch import ResultsFile, run_batch
from vtag.tasks.results_file import prediction_line
from vtag.tasks.classify import LabelScore, Prediction

def _batch(folders, out, model, **options):
    options.setdefault("workers", 0)
    return run_batch(folders, out, model=model, device="cpu", random_weights=True, top_k=2, **options)


# Characters str.splitlines() treats as line ends although JSON and CSV keep them inside a value.
SPLITLINES_BREAKERS = ["\r", "\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"]


def _prediction(path: str) -> Prediction:
    return Prediction(path, [LabelScore(3, "Car", 0.75)], "tiny", path)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_names_with_line_separators_resume_and_retry_keeps_finished(tmp_path, fmt):
    out = tmp_path / f"results.{fmt}"
    done = [str(tmp_path / f"clip{c}end.mp4") for c in SPLITLINES_BREAKERS] + [str(tmp_path / 'q"uote,\nnl.mp4')]
    failed = str(tmp_path / "broken\u2028\r.mp4")
    results = ResultsFile(out)
    assert [len(s) for s in results.prepare(retry_failed=False)] == [0, 0]
    for path in done:
        results.append(prediction_line(_prediction(path), path, None, fmt))
    results.append(prediction_line(None, failed, f"{failed}: not a video", fmt))

    finished, failed_before = ResultsFile(out).prepare(retry_failed=False)
    assert finished == set(done) and set(failed_before) == {failed}
    # --retry-failed drops the failed record only: every finished one is still there, once.
    finished, failed_before = ResultsFile(out).prepare(retry_failed=True)
    assert finished == set(done) and not failed_before
    records = results_records(out, fmt)
    assert sorted(r["path"] for r in records) == sorted(done)
    assert all("error" not in r for r in records)


def test_torn_tail_inside_a_quoted_newline_is_cut(tmp_path):
    fmt = "csv"  # JSON escapes a newline; CSV keeps it raw inside quotes
    out = tmp_path / f"results.{fmt}"
    results = ResultsFile(out)
    results.prepare(retry_failed=False)
    kept = str(tmp_path / "a.mp4")
    results.append(prediction_line(_prediction(kept), kept, None, fmt))
    whole = out.read_bytes()
    torn = str(tmp_path / "b\nc.mp4")
    line = prediction_line(_prediction(torn), torn, None, fmt).encode()
    # a kill mid-write: the record stops just after the newline inside the (quoted) name
    out.write_bytes(whole + line[:line.index(b"\n") + 1])
    finished, _ = ResultsFile(out).prepare(retry_failed=False)
    assert finished == {kept}
    assert out.read_bytes() == whole


def test_a_results_file_of_something_else_is_one_line(tmp_path):
    from vtag.errors import VtagError

    out = tmp_path / "results.jsonl"
    out.write_text('{"path": "a.mp4", "labels": []}\n[1, 2]\n')
    with pytest.raises(VtagError, match="line 2 is not a vtag results line") as info:
        ResultsFile(out).prepare(retry_failed=False)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_names_that_are_not_utf8_are_tagged_and_resume(tmp_path, tiny_model, fmt):
    folder = tmp_path / "clips"
    folder.mkdir()
    good, bad = os.fsencode(folder) + b"/caf\xe9.mp4", os.fsencode(folder) + b"/\xff\xfebroken.mp4"
    make_media(tmp_path / "tmp.mp4", duration_s=1.0, audio=False)
    os.replace(tmp_path / "tmp.mp4", good)
    make_broken(tmp_path / "tmp.mp4", "text")
    os.replace(tmp_path / "tmp.mp4", bad)
    out = tmp_path / f"results.{fmt}"
    summary = _batch([folder], out, tiny_model)
    assert (summary.done, summary.failed) == (1, 1)
    records = results_records(out, fmt)  # strict UTF-8: raises on a raw undecodable byte
    assert len(records) == 2
    by_ok = {("error" not in r): r for r in records}
    assert by_ok[True]["path"].endswith("caf\udce9.mp4" if fmt == "jsonl" else "caf\\udce9.mp4")
    assert "broken.mp4" in by_ok[False]["error"]
    # the rerun finds both under the same names: nothing tagged again, nothing written twice
    again = _batch([folder], out, tiny_model)
    assert (again.done, again.skipped, again.failed_before) == (0, 1, 1)
    assert len(results_records(out, fmt)) == 2


def test_a_resume_that_spells_the_folder_differently_tags_nothing_again(tmp_path, tiny_model, monkeypatch):
    folder = tmp_path / "clips"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        make_media(folder / name, duration_s=1.0, audio=False)
    (tmp_path / "link").symlink_to(folder)
    out = tmp_path / "results.jsonl"
    monkeypatch.chdir(tmp_path)
    first = _batch(["clips"], out, tiny_model)
    assert first.done == 2
    for spelling in (str(folder), "./clips/../clips", "link", [str(folder), "clips"]):
        again = _batch(spelling if isinstance(spelling, list) else [spelling], out, tiny_model)
        assert (again.total, again.done, again.skipped) == (2, 0, 2), spelling
    records = results_records(out, "jsonl")
    assert sorted(Path(r["path"]).name for r in records) == ["a.mp4", "b.mp4"]


def test_shard_of_a_name_that_is_not_utf8():
    from vtag.io.shard import Shard, select_shard

    names = [os.fsdecode(b"caf\xe9.mp4"), "plain.mp4"]
    parts = [select_shard(names, names, Shard(i, 2)) for i in (1, 2)]
    assert sorted(parts[0] + parts[1]) == sorted(names)


def _error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_a_second_batch_on_the_same_output_refuses_in_one_line(tmp_path, tiny_model):
    names = [f"c{i}.mp4" for i in range(5)]
    folder = silent_clips(tmp_path / "clips", names)
    out = tmp_path / "results.jsonl"
    first = subprocess.Popen(batch_command(folder, out, tiny_model), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and first.poll() is None and (not out.exists() or not out.read_text()):
        time.sleep(0.05)
    assert first.poll() is None, "the first batch ended before the second could start: " + first.stderr.read()
    second = subprocess.run(batch_command(folder, out, tiny_model), capture_output=True, text=True, timeout=300)
    assert first.wait(timeout=300) == 0, first.stderr.read()
    assert second.returncode == 2, second.stderr
    assert _error_lines(second.stderr) == [
        f"error: {out} is being written by another vtag batch (pid {first.pid}): wait for it to finish, "
        "or give -o another file"]
    records = results_records(out, "jsonl")
    assert sorted(Path(r["path"]).name for r in records) == names  # each file once
    assert not list(tmp_path.glob(".results.jsonl.lock")), "the lock outlived its run"


@pytest.mark.parametrize("recursive", [False, True])
def test_symlink_loops_in_the_folder_fail_alone(tmp_path, tiny_model, recursive):
    folder = tmp_path / "clips"
    folder.mkdir()
    make_media(folder / "good.mp4", duration_s=1.0, audio=False)
    (folder / "loop.mp4").symlink_to("loop.mp4")
    (folder / "dirloop").symlink_to("dirloop")
    out = tmp_path / "results.jsonl"
    summary = _batch([folder], out, tiny_model, recursive=recursive)
    assert (summary.done, summary.failed) == (1, 1)
    (error,) = [r["error"] for r in results_records(out, "jsonl") if "error" in r]
    assert "loop.mp4" in error and "symbolic links" in error and "\n" not in error


def test_a_folder_that_is_a_symlink_loop_is_one_line(tmp_path, tiny_model):
    from vtag.errors import VtagError

    (tmp_path / "self").symlink_to("self")
    with pytest.raises(VtagError, match="symbolic links") as info:
        _batch([tmp_path / "self"], tmp_path / "results.jsonl", tiny_model)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("code", ["ENOSPC", "EROFS"])
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_full_or_read_only_disk_is_one_line_and_loses_nothing(tmp_path, tiny_model, monkeypatch, code, fmt):
    import errno

    from vtag.errors import VtagError

    folder = tmp_path / "clips"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        make_media(folder / name, duration_s=1.0, audio=False)
    out = tmp_path / f"results.{fmt}"
    number = getattr(errno, code)
    if code == "ENOSPC":  # the disk fills up while results are appended
        real_write = os.write

        def write(fd, data):
            if b"b.mp4" in bytes(data):
                raise OSError(number, os.strerror(number))
            return real_write(fd, data)

        monkeypatch.setattr(os, "write", write)
    else:  # the output's disk is mounted read-only (root ignores a chmod, so the open is made to fail)
        real_open = os.open

        def open_(path, flags, *args, **kwargs):
            if os.fspath(path).startswith(os.fspath(tmp_path / ".results")) or os.fspath(path).startswith(os.fspath(out)):
                raise OSError(number, os.strerror(number), os.fspath(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", open_)
    with pytest.raises(VtagError) as info:
        _batch([folder], out, tiny_model)
    message = str(info.value)
    assert str(out) in message and os.strerror(number) in message and "\n" not in message
    monkeypatch.undo()
    again = _batch([folder], out, tiny_model)
    records = results_records(out, fmt)
    assert sorted(Path(r["path"]).name for r in records) == ["a.mp4", "b.mp4"]
    assert all("error" not in r for r in records) and again.failed == 0


def test_a_rerun_reports_files_that_failed_earlier_and_exits_1(tmp_path, tiny_model):
    folder = silent_clips(tmp_path / "clips", ["good.mp4"], duration_s=1.0)
    make_broken(folder / "text.mp4", "text")
    out = tmp_path / "results.jsonl"
    first = subprocess.run(batch_command(folder, out, tiny_model), capture_output=True, text=True, timeout=300)
    assert first.returncode == 1, first.stderr
    rerun = subprocess.run(batch_command(folder, out, tiny_model), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 1, rerun.stderr
    stderr = " ".join(rerun.stderr.split())  # rich wraps long lines
    assert "text.mp4" in stderr and "failed in an earlier run: rerun with --retry-failed" in stderr
    assert "0 tagged, 1 failed, 1 already done (of 2)" in stderr
    assert sorted(Path(r["path"]).name for r in results_records(out, "jsonl")) == ["good.mp4", "text.mp4"]


HOSTILE_IDS = ["a,b", 'say "hi"', "two\nlines", "cr\rhere", "=HYPERLINK(\"http://x\",\"y\")", "+1+2", "-3",
               "@SUM(A1)", "'quoted", "plain"]


def _formula_safe(cell: str) -> bool:
    return not cell.startswith(("=", "+", "-", "@", "\t", "\r"))


def test_kaggle_rows_quote_and_neutralise_hostile_ids():
    from vtag.tasks.classify import kaggle_rows

    predictions = [Prediction(vid, [LabelScore(7, "x", 0.5)], "tiny", "/some/file.tfrecord") for vid in HOSTILE_IDS]
    text = "".join(kaggle_rows(predictions))
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == ["VideoId", "LabelConfidencePairs"] and len(rows) == len(HOSTILE_IDS) + 1
    for vid, (cell, pairs) in zip(HOSTILE_IDS, rows[1:]):
        assert _formula_safe(cell), cell
        assert cell == (vid if cell == vid else "'" + vid)  # the id itself, or it behind one quote
        assert pairs == "7 0.500000"


def test_batch_csv_cells_are_formula_safe_and_read_back(tmp_path):
    out = tmp_path / "results.csv"
    results = ResultsFile(out)
    results.prepare(retry_failed=False)
    for name in HOSTILE_IDS:
        results.append(prediction_line(_prediction(name), name, None, "csv"))
    failed = "=cmd|'/C calc'!A0.mp4"
    results.append(prediction_line(None, failed, f"{failed}: not a video", "csv"))
    rows = list(csv.reader(io.StringIO(out.read_bytes().decode("utf-8"), newline="")))[1:]
    assert len(rows) == len(HOSTILE_IDS) + 1
    assert all(_formula_safe(cell) for row in rows for cell in row), rows
    finished, failed_before = ResultsFile(out).prepare(retry_failed=False)
    key = ResultsFile(out).key
    assert finished == {key(n) for n in HOSTILE_IDS}
    assert failed_before == {key(failed): f"{failed}: not a video"}


def _children(pid: int) -> list[int]:
    """Live (not zombie) child processes of pid, from /proc (psutil may be absent)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (name) ": state, ppid, ...
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc (Linux)")
def test_decode_workers_die_with_a_killed_batch(tmp_path, tiny_model):
    import signal

    folder = tmp_path / "clips"
    folder.mkdir()
    for i in range(6):
        make_media(folder / f"c{i}.mp4", duration_s=3.0)
    out = tmp_path / "results.jsonl"
    command = batch_command(folder, out, tiny_model)
    command[command.index("--workers") + 1] = "2"
    batch = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        # a result on disk: the workers are running their loop, not still starting
        while time.time() < deadline and batch.poll() is None and (not out.exists() or not out.read_text()):
            time.sleep(0.05)
        workers = _children(batch.pid)
        assert batch.poll() is None and len(workers) >= 2, "the batch ended before it could be killed"
        batch.send_signal(signal.SIGKILL)
        batch.wait()
        deadline = time.time() + 10
        while time.time() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.1)
        survivors = [pid for pid in workers if _alive(pid)]
    finally:
        for pid in _children(batch.pid) + locals().get("workers", []):
            try:
                os.kill(pid, signal.SIGKILL)  # only the processes this test started
            except OSError:
                pass
    assert not survivors, f"decode workers {survivors} outlived their killed batch"


PEAK_RSS = """
import resource, sys
import torch  # both modes pay for the imports a worker makes, so the difference is the frames held
from vtag.features import inception, media, thumbnails, vggish
from vtag.tasks.batch import decode_messages

if sys.argv[2] == "decode":  # what decoding alone costs: the frames, dropped as they come
    for frame in media.sample_frames_timed(sys.argv[1]):
        pass
else:  # what a batch decode worker sends for the file
    for message in decode_messages(0, sys.argv[1], 300):
        pass
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux only")
def test_a_worker_holds_no_full_size_frames(tmp_path):
    from vtag.tasks.batch import FRAMES_PER_CHUNK

    clip = make_media(tmp_path / "big.mp4", duration_s=FRAMES_PER_CHUNK, fps=1, size=(3000, 3000), audio=False, crf=40)

    def peak_mib(mode: str) -> float:
        result = subprocess.run([sys.executable, "-c", PEAK_RSS, str(clip), mode], capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, result.stderr
        return int(result.stdout.split()[-1]) / 1024

    extra = peak_mib("worker") - peak_mib("decode")
    full_chunk = FRAMES_PER_CHUNK * 3000 * 3000 * 3 / 2**20  # 412 MiB of full-size frames
    # A chunk of 299x299 float inputs is 16 MiB; the bound leaves room for allocator noise, far below
    # the full-size chunk (and its np.stack copy) a worker used to hold.
    assert extra < 0.4 * full_chunk, f"a decode worker holds {extra:.0f} MiB above decoding itself"


def test_worker_preprocessed_frames_give_the_same_features(tmp_path):
    import numpy as np

    from vtag.features import media
    from vtag.features.extract import FeatureExtractor
    from vtag.tasks.batch import decode_messages

    clip = make_media(tmp_path / "odd.mp4", duration_s=3.0, size=(321, 173), audio=False)
    extractor = FeatureExtractor(random_weights=True, device="cpu")
    chunks = [m[2] for m in decode_messages(0, str(clip), 300) if m[0] == "frames"]
    in_batch = np.concatenate([extractor.preprocessed_features(c) for c in chunks])
    direct = extractor.visual_features(media.sample_frames(clip))
    assert in_batch.shape == direct.shape == (3, 1024)
    np.testing.assert_array_equal(in_batch, direct)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_nan_result_fails_that_file_alone_and_exits_1(tmp_path, tiny_model, monkeypatch, fmt):
    """A score JSON cannot hold (NaN) is that file's one-line failure: the other files' results are
    written, the results file stays strict JSON, and the run exits 1 like any other failure."""
    import numpy as np
    from typer.testing import CliRunner

    from vtag.cli import app
    from vtag.tasks.classify import Tagger

    folder = tmp_path / "clips"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        make_media(folder / name, duration_s=1.0, audio=False)
    real = Tagger.scores
    calls = []

    def scores(self, visual, audio, batch_size=1024):
        calls.append(1)
        out = real(self, visual, audio, batch_size)
        if len(calls) == 2:  # workers=0 tags in name order: b.mp4
            out[:] = np.nan
        return out

    monkeypatch.setattr(Tagger, "scores", scores)
    out = tmp_path / f"results.{fmt}"
    result = CliRunner().invoke(app, ["batch", str(folder), "-o", str(out), "--workers", "0", "--model",
                                      str(tiny_model), "--random-weights", "--device", "cpu"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    records = {Path(r["path"]).name: r for r in results_records(out, fmt)}
    assert sorted(records) == ["a.mp4", "b.mp4", "c.mp4"]
    assert "labels" in records["a.mp4"] and "labels" in records["c.mp4"]
    error = records["b.mp4"]["error"]
    assert "b.mp4" in error and "NaN" in error and "\n" not in error
    if fmt == "jsonl":  # strict JSON: a NaN anywhere would make json.loads(..., parse_constant) fail
        for line in out.read_text(encoding="utf-8").split("\n"):
            if line:
                json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} in {line}"))
    again = ResultsFile(out).prepare(retry_failed=False)
    assert len(again[0]) == 2 and len(again[1]) == 1  # resume sees two done, one failed
