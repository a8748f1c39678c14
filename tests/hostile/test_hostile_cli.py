"""The command line as a user meets it (issue 11): an installed wheel, -o, help and version, globs and
stdin, error wording, JSON shapes, the size of a default training run, the cache folder."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
SAMPLE = REPO / "examples" / "yt8m-2018-sample.tfrecord"


def run_cli(*args: str, stdin: str | None = None, env: dict | None = None, cwd: Path | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m vtag ARGS` in a fresh process, this checkout first on the path."""
    full_env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="100", **(env or {}))
    return subprocess.run([sys.executable, "-m", "vtag", *args], input=stdin, capture_output=True, text=True,
                          env=full_env, cwd=cwd or REPO, timeout=timeout)


# ---- 1. a built wheel carries the vocabularies and the default model ------------------------------


def _dependency_dirs() -> list[str]:
    """Where this interpreter finds vtag's dependencies (torch, numpy, av, ...), the checkout and any
    vtag of its own left out: a fresh venv is given these so that nothing has to be downloaded."""
    import importlib.util
    import site
    import sysconfig

    dirs = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()}
    for name in ("torch", "numpy", "av", "typer", "safetensors", "rich", "PIL"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            dirs.add(str(Path(spec.origin).resolve().parent.parent))
    # A folder that would give `import vtag` an answer (the checkout, or a site-packages holding a
    # vtag/) is left out; the venv being inside the checkout (.venv, as CI makes it) is not a reason.
    return sorted(d for d in dirs if Path(d).is_dir() and not (Path(d) / "vtag").exists())


@pytest.mark.timeout(400)
def test_a_wheel_in_a_fresh_venv_runs_the_quick_start_from_another_folder(tmp_path):
    """The wheel built from the checkout, installed by pip (no index, no deps) into a new venv, runs
    the README's first quick-start command in a folder that is not the checkout."""
    if shutil.which("git") is None:
        pytest.skip("needs git to list the checkout's files")
    # build from a copy so the checkout gets no build/ or egg-info of ours
    source = tmp_path / "src"
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.split("\n")
    for name in listed:
        if name and (name.startswith(("vtag/", "weights/")) or "/" not in name) and (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(wheels), str(source)], check=True, capture_output=True, timeout=240)
    wheel = next(wheels.glob("vtag-*.whl"))

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True,
                   timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # this interpreter's pip installs into the venv (--python): the venv needs no pip of its own
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index",
                                "--no-deps", "-q", str(wheel)], capture_output=True, text=True, timeout=240)
    assert installed.returncode == 0, installed.stderr
    # the dependencies already here, after the venv's own site-packages (so its vtag comes first);
    # a plain path line, so any editable-vtag hook (.pth) in those folders is not run
    (Path(purelib) / "zz_test_dependencies.pth").write_text("".join(d + "\n" for d in _dependency_dirs()))

    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "examples").mkdir(parents=True)
    shutil.copy2(SAMPLE, elsewhere / "examples" / SAMPLE.name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(COLUMNS="100", VTAG_CACHE=str(tmp_path / "cache"))
    where = subprocess.run([str(python), "-c", "import vtag; print(vtag.__file__)"], capture_output=True,
                           text=True, env=env, cwd=elsewhere, check=True).stdout.strip()
    assert Path(where).resolve().is_relative_to(venv.resolve()), where  # the wheel answered, not the checkout
    # README, quick start, first line, as typed: `vtag classify examples/yt8m-2018-sample.tfrecord --top-k 3`
    done = subprocess.run([str(venv / "bin" / "vtag"), "classify", "examples/yt8m-2018-sample.tfrecord", "--top-k", "3"],
                          capture_output=True, text=True, env=env, cwd=elsewhere, timeout=240)
    assert done.returncode == 0, done.stderr
    from vtag.io.records import read_records

    ids = [record.id for record in read_records(SAMPLE)]
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert [line.split("  ", 1)[0] for line in lines] == ids
    for line in lines:  # "ID  name 0.912, name 0.405, name 0.101" (a name may hold ", ": "Nike, Inc.")
        scores = re.findall(r" ([01]\.\d{3})(?=, |$)", line.split("  ", 1)[1])
        assert len(scores) == 3 and scores == sorted(scores, reverse=True), line


# ---- 2. -o always writes ------------------------------------------------------------------------


def _records_in_sample() -> int:
    from vtag.io.inspect import inspect_file

    return inspect_file(SAMPLE).records


def test_classify_json_with_o_writes_the_file_not_stdout(tmp_path):
    out = tmp_path / "tags.jsonl"
    done = run_cli("classify", str(SAMPLE), "--json", "-o", str(out), "-k", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == _records_in_sample()
    assert len({line["source"] for line in lines}) == len(lines)


def test_classify_o_alone_picks_the_format_by_suffix(tmp_path):
    csv_file = tmp_path / "submission.csv"
    done = run_cli("classify", str(SAMPLE), "-o", str(csv_file), "-k", "2")
    assert done.returncode == 0, done.stderr
    rows = csv_file.read_text().splitlines()
    assert rows[0] == "VideoId,LabelConfidencePairs" and len(rows) == _records_in_sample() + 1


def test_classify_json_and_kaggle_together_is_one_line_error(tmp_path):
    out = tmp_path / "f.csv"
    done = run_cli("classify", str(SAMPLE), "--json", "--format", "kaggle", "-o", str(out))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: --json and --format kaggle ask for two formats: give one of them"]
    assert not out.exists()


def test_classify_o_writes_nothing_when_a_later_input_fails(tmp_path):
    bad = tmp_path / "bad.tfrecord"
    bad.write_bytes(b"\x01" * 40)
    out = tmp_path / "tags.jsonl"
    done = run_cli("classify", str(SAMPLE), str(bad), "--json", "-o", str(out))
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "bad.tfrecord" in done.stderr
    assert not out.exists() and not list(tmp_path.glob(".tags.jsonl.*"))


# ---- 3. version, -h, help, completion, --quiet / --verbose -----------------------------------------


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag):
    import vtag

    done = run_cli(flag)
    assert done.returncode == 0 and done.stdout.strip() == f"vtag {vtag.__version__}"


@pytest.mark.parametrize("argv", [["classify", "-h"], ["weights", "pull", "-h"], ["help", "classify"],
                                  ["help", "weights", "pull"], ["-h"]])
def test_h_and_help_command_print_the_help(argv):
    done = run_cli(*argv)
    assert done.returncode == 0, done.stderr
    usage = " ".join(["vtag", *[a for a in argv if a not in ("-h", "help")]])
    assert f"Usage: {usage} " in done.stdout


def test_help_of_an_unknown_command_suggests_the_close_one():
    done = run_cli("help", "clasify")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: command 'clasify' is unknown: did you mean classify")


def test_shell_completion_is_enabled():
    # the shell is named here: detecting it from the parent processes fails under a test runner
    shown = run_cli("--show-completion", "bash", env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert shown.returncode == 0 and "_vtag_completion" in shown.stdout, shown.stderr
    completed = run_cli(env={"_VTAG_COMPLETE": "complete_bash", "COMP_WORDS": "vtag clas", "COMP_CWORD": "1"})
    assert completed.stdout.split() == ["classify"]


@pytest.mark.parametrize("where", ["front", "end"])
def test_quiet_prints_results_only_and_still_prints_errors(tmp_path, where):
    out = tmp_path / "t.jsonl"
    args = ["classify", str(SAMPLE), "-o", str(out)]
    done = run_cli(*(["-q", *args] if where == "front" else [*args, "--quiet"]))
    assert done.returncode == 0 and done.stderr == "" and out.is_file()
    failed = run_cli("-q", "info", str(tmp_path / "absent.tfrecord"))
    assert failed.returncode == 2 and failed.stderr.strip().startswith("error: ")


def test_verbose_says_more():
    plain = run_cli("info", str(SAMPLE))
    loud = run_cli("-v", "info", str(SAMPLE))
    assert plain.returncode == loud.returncode == 0
    assert plain.stderr == "" and loud.stderr.strip().endswith(" s")
    assert run_cli("-q", "-v", "info", str(SAMPLE)).returncode == 2


# ---- 4. classify takes quoted globs and folders of records; - reads paths from stdin --------------


def _two_copies(tmp_path) -> Path:
    folder = tmp_path / "shards"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(SAMPLE, folder / "a.tfrecord")
    shutil.copy(SAMPLE, folder / "sub" / "b.tfrecord")
    (folder / "notes.txt").write_text("not a record")
    return folder


def _json_paths(stdout: str) -> list[str]:
    return [json.loads(line)["path"] for line in stdout.splitlines() if line.strip()]


def test_classify_a_quoted_glob_and_a_folder_of_records(tmp_path):
    folder = _two_copies(tmp_path)
    records = _records_in_sample()
    by_glob = run_cli("classify", str(folder / "**" / "*.tfrecord"), "--json", "-k", "1")
    assert by_glob.returncode == 0, by_glob.stderr
    assert sorted(set(_json_paths(by_glob.stdout))) == sorted([str(folder / "a.tfrecord"), str(folder / "sub" / "b.tfrecord")])
    assert len(_json_paths(by_glob.stdout)) == 2 * records
    by_folder = run_cli("classify", str(folder), "--json", "-k", "1")
    assert by_folder.returncode == 0, by_folder.stderr
    assert len(_json_paths(by_folder.stdout)) == 2 * records


def test_classify_a_folder_without_records_points_to_batch(tmp_path):
    (tmp_path / "clip.mp4").write_bytes(b"")
    done = run_cli("classify", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {tmp_path} is a folder without record files: use `vtag batch {tmp_path}` to tag every video in it"]


def test_classify_a_glob_matching_nothing(tmp_path):
    done = run_cli("classify", str(tmp_path / "*.tfrecord"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: {tmp_path / '*.tfrecord'}: pattern matches no files"]


@pytest.mark.parametrize("command", ["classify", "info", "eval"])
def test_dash_reads_paths_from_stdin(tmp_path, command):
    folder = _two_copies(tmp_path)
    listed = f"{folder / 'a.tfrecord'}\n\n{folder / 'sub' / 'b.tfrecord'}\n"
    done = run_cli(command, "-", "--json", stdin=listed)
    assert done.returncode == 0, done.stderr
    if command == "classify":
        assert len(_json_paths(done.stdout)) == 2 * _records_in_sample()
    elif command == "eval":
        assert json.loads(done.stdout.splitlines()[0])["videos"] == 2 * _records_in_sample()
    else:
        assert "a.tfrecord" in done.stdout and "b.tfrecord" in done.stdout


def test_dash_with_empty_stdin_is_one_line_error():
    done = run_cli("info", "-", stdin="")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: `-`: stdin held no file paths (one a line)"]


# ---- 5. help in user words; "did you mean" on --model ----------------------------------------------


def _command_paths() -> list[list[str]]:
    import typer

    from vtag.cli import app

    root = typer.main.get_command(app)
    paths = [[]]
    for name, command in root.commands.items():
        paths.append([name])
        paths.extend([name, sub] for sub in getattr(command, "commands", {}))
    return paths


def test_every_help_speaks_user_words(monkeypatch, capsys):
    from vtag.cli import main

    monkeypatch.setenv("COLUMNS", "120")
    paths = _command_paths()
    assert ["classify"] in paths and ["weights", "pull"] in paths
    for path in paths:
        monkeypatch.setattr(sys, "argv", ["vtag", *path, "-h"])
        with pytest.raises(SystemExit) as exited:
            main()
        text = capsys.readouterr().out
        assert exited.value.code == 0, path
        for python_word in ("<bool>", "<list[", "<int", "<str>", "<path>", "<float>", "{"):
            assert python_word not in text, (path, python_word)
        if path == ["batch"]:
            top_k = next(line for line in text.splitlines() if "--top-k" in line)
            assert "labels" in top_k  # documented, not only [default: 5]
        if path in (["classify"], ["batch"]):
            assert "vtag[onnx]" in text  # the extra's name survives the help's markup
    assert "FILE..." in run_cli("classify", "-h").stdout


def test_classify_model_typo_suggests_the_registry_name():
    done = run_cli("classify", str(SAMPLE), "--model", "atend-fusion")
    assert done.returncode == 2
    line, = done.stderr.strip().splitlines()
    assert line.startswith("error: --model atend-fusion: ") and "did you mean attend-fusion" in line


# ---- 6. errors in user words ----------------------------------------------------------------------


def test_no_error_message_speaks_python():
    import re

    python_words = re.compile(r"skip_bad=True|read it with read_\w+|pass \w+=(True|False)|random_weights=True")
    offenders = []
    for source in (REPO / "vtag").rglob("*.py"):
        for number, line in enumerate(source.read_text().splitlines(), 1):
            text = line.strip()
            message = "Error(" in text or "raise" in text or (text.startswith(('f"', '"')) and not text.startswith('"""'))
            if message and python_words.search(text):
                offenders.append(f"{source.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == []


def test_a_corrupt_record_file_suggests_the_flag(tmp_path):
    bad = tmp_path / "bad.tfrecord"
    bad.write_bytes(b"\x01" * 40)
    done = run_cli("info", str(bad))
    assert done.returncode == 2
    line, = done.stderr.strip().splitlines()
    assert line.startswith(f"error: {bad}: record 0: ") and line.endswith("(--skip-bad skips bad records and counts them)")


@pytest.mark.parametrize("command", ["info", "eval"])
@pytest.mark.parametrize("name", ["bikes.mp4", "bikes.bin"])
def test_a_video_given_to_a_record_command_is_sent_to_classify(tmp_path, command, name):
    sys.path.insert(0, str(REPO / "tests"))
    from media_factory import make_media

    clip = make_media(tmp_path / "clip.mp4", duration_s=1.0)
    given = tmp_path / name
    clip.rename(given)
    done = run_cli(command, str(given))
    assert done.returncode == 2
    line, = done.stderr.strip().splitlines()
    assert line == (f"error: {given} is a video or audio file, not a record file: tag it with `vtag classify {given}`, "
                    f"or turn it into records with `vtag extract {given} -o bikes.tfrecord`")
    assert "--skip-bad" not in line


def test_an_audioset_file_is_named_as_such_without_skip_bad(tmp_path):
    from vtag.io.records import read_records
    from vtag.io.tfrecord import encode_sequence_example, write_tfrecord
    from vtag.errors import VtagError

    path = tmp_path / "audioset.tfrecord"
    record = encode_sequence_example({"video_id": [b"abc"], "labels": [1]}, {"audio_embedding": [[b"\x00" * 128]]})
    write_tfrecord(path, [record])
    for skip_bad in (False, True):
        with pytest.raises(VtagError) as caught:
            list(read_records(path, skip_bad=skip_bad))
        message = str(caught.value)
        assert "AudioSet" in message and "read_audioset_records" not in message and "skip" not in message


# ---- 7. missing extractor weights: said at once, every file, every fix ----------------------------


@pytest.mark.parametrize("command", ["classify", "extract"])
def test_missing_extractor_weights_are_named_before_torch_loads(tmp_path, command):
    from vtag.weights import WEIGHT_FILES

    clip = tmp_path / "bikes.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)  # never decoded: the check comes first
    args = [command, str(clip)] + (["-o", str(tmp_path / "out.tfrecord")] if command == "extract" else [])
    env = dict(os.environ, PYTHONPATH=str(REPO), VTAG_CACHE=str(tmp_path / "empty-cache"), COLUMNS="100")
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "vtag", *args], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=300)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    imported = {line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time:")}
    assert "torch" not in imported and "av" not in imported
    message, = [line for line in lines if not line.startswith("import time:")]
    assert message.startswith("error: tagging video or audio needs the official feature-extractor weights")
    for name, entry in WEIGHT_FILES.items():
        assert (name in message) == (entry.fallback_for is None), name
    for fix in ("`vtag weights pull`", "`vtag weights import FILE...`", "--random-weights"):
        assert fix in message


# ---- 8. progress on stderr, for a person at a terminal only ----------------------------------------


def _run_with_tty_stderr(*args: str) -> tuple[int, str, str]:
    """(exit code, stdout, what the terminal on stderr showed)."""
    import pty

    master, slave = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="100", TERM="xterm")
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "vtag", *args], stdout=subprocess.PIPE, stderr=slave,
                            env=env, cwd=REPO, text=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    out = proc.stdout.read()
    code = proc.wait(timeout=300)
    os.close(master)
    return code, out, b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_eval_shows_progress_on_a_terminal_only():
    code, out, terminal = _run_with_tty_stderr("eval", str(SAMPLE), "--json", "--batch-size", "64")
    assert code == 0 and json.loads(out)["videos"] == _records_in_sample()
    assert "evaluating" in terminal
    code, out, terminal = _run_with_tty_stderr("-q", "eval", str(SAMPLE), "--json")
    assert code == 0 and "evaluating" not in terminal
    piped = run_cli("eval", str(SAMPLE), "--json")
    assert piped.returncode == 0 and piped.stderr == ""


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_classify_of_a_video_shows_progress_on_a_terminal(tmp_path):
    sys.path.insert(0, str(REPO / "tests"))
    from media_factory import make_media

    clip = make_media(tmp_path / "ride.mp4", duration_s=2.0, size=(96, 64), audio=False)
    code, out, terminal = _run_with_tty_stderr("classify", str(clip), "--random-weights", "--device", "cpu", "--json")
    assert code == 0, terminal
    assert json.loads(out)["path"] == str(clip)
    assert "ride.mp4" in terminal and "/2 s" in terminal


# ---- 9. one JSON shape: JSON Lines, never NaN ------------------------------------------------------


def _json_lines(stdout: str) -> list[dict]:
    lines = stdout.splitlines()
    assert lines and all(line.startswith("{") and line.endswith("}") for line in lines), stdout[:200]
    return [json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} in JSON")) for line in lines]


@pytest.mark.parametrize("argv, count, keys", [
    (["info", str(SAMPLE), str(SAMPLE.parent)], len(list(SAMPLE.parent.glob("*.tfrecord"))), {"path", "kind", "records"}),
    (["labels", "guitar"], None, {"index", "name", "vocabulary"}),
    (["models"], None, {"name", "params"}),
    (["weights"], None, {"name", "present", "verified", "path"}),
    (["eval", str(SAMPLE)], 1, {"model", "model_name", "gap", "videos"}),
    (["classify", str(SAMPLE), "-k", "2"], "records", {"source", "path", "model", "vocabulary", "labels"}),
])
def test_every_json_is_json_lines(argv, count, keys):
    done = run_cli(*argv, "--json")
    assert done.returncode == 0, done.stderr
    rows = _json_lines(done.stdout)
    want = _records_in_sample() if count == "records" else count
    assert want is None or len(rows) == want
    assert all(keys <= set(row) for row in rows)


def test_docs_json_shows_every_shape(repo_root):
    text = (repo_root / "docs" / "JSON.md").read_text()
    for command in ("vtag classify", "vtag eval", "vtag info", "vtag labels", "vtag models", "vtag weights", "vtag batch"):
        assert f"`{command}" in text, command
    examples = [line for line in text.splitlines() if line.startswith("{")]
    assert len(examples) >= 7
    for line in examples:
        json.loads(line)


def test_a_nan_score_is_an_error_not_nan(tmp_path):
    import torch

    from vtag.models.registry import create_model
    from vtag.models.storage import save_model

    model = create_model("fc-early-fusion", num_classes=3862, hidden=16)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float("nan"))
    save_model(model, tmp_path / "broken", extra={"vocabulary": "2018"})
    for argv in (["classify", str(SAMPLE)], ["eval", str(SAMPLE)]):
        done = run_cli(*argv, "--model", str(tmp_path / "broken"), "--json")
        assert "NaN" not in done.stdout and "Infinity" not in done.stdout
        assert done.returncode == 2, done.stdout[:300]
        line, = done.stderr.strip().splitlines()
        assert line.startswith("error: ") and ("not a number" in line or "not numbers" in line or "holds NaN" in line)


# ---- 11. the cache follows XDG_CACHE_HOME ---------------------------------------------------------


def test_cache_dir_respects_xdg_cache_home(tmp_path, monkeypatch):
    from vtag.weights import cache_dir

    monkeypatch.delenv("VTAG_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "vtag"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # not absolute: the XDG spec says ignore it
    assert cache_dir() == Path.home() / ".cache" / "vtag"
    monkeypatch.setenv("VTAG_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "mine"
    shown = run_cli("weights", "--json", env={"XDG_CACHE_HOME": str(tmp_path / "xdg"), "VTAG_CACHE": ""})
    assert shown.returncode == 0, shown.stderr
    assert {row["cache"] for row in _json_lines(shown.stdout)} == {str(tmp_path / "xdg" / "vtag")}


# ---- 10. a training run's disk: one copy of the weights, optimizer state only in last/ -----------


def _train_tiny(out: Path, **extra):
    from vtag.tasks.train import TrainConfig, train

    config = TrainConfig(train=[str(SAMPLE)], valid=[str(SAMPLE)], model="fc-early-fusion", epochs=2,
                         batch_size=64, out=str(out), device="cpu", model_overrides={"hidden": 16}, **extra)
    return train(config, log=lambda line: None)


def _disk_bytes(folder: Path) -> int:
    """Bytes `folder` takes, a hard-linked file counted once."""
    seen = {}
    for path in folder.rglob("*"):
        if path.is_file():
            st = path.stat()
            seen[(st.st_dev, st.st_ino)] = st.st_size
    return sum(seen.values())


@pytest.mark.timeout(300)
def test_a_default_run_writes_its_model_once_and_no_optimizer_state(tmp_path):
    """`vtag train` with every default: a compact model, and once finished no optimizer state; the run
    folder stays within one float32 copy of the weights (best/ linked to last/) plus its logs."""
    from dataclasses import replace

    from vtag.models.registry import ModelConfig, count_parameters, paper_config

    out = tmp_path / "run"
    done = run_cli("train", "--train", str(SAMPLE), "--valid", str(SAMPLE), "--epochs", "1", "--device", "cpu",
                   "--out", str(out), env={"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    built = ModelConfig.from_dict(json.loads((out / "last" / "config.json").read_text())["model"])
    params = count_parameters(built)
    paper = count_parameters(replace(paper_config(built.name), num_classes=built.num_classes))
    assert params < paper / 2, (built, params, paper)  # not the paper's size unless asked (--size paper)
    leftovers = [p.name for p in out.rglob("*") if p.name in ("optimizer.safetensors", "state.json")]
    assert not leftovers
    assert _disk_bytes(out) < 4 * params + 2_000_000  # float32 weights once + config, metrics, events


def test_a_run_keeps_one_copy_of_its_weights(tmp_path):
    from safetensors.torch import load_file

    result = _train_tiny(tmp_path / "run", keep_optimizer=True)
    last, best = tmp_path / "run" / "last", tmp_path / "run" / "best"
    optimizer = load_file(last / "optimizer.safetensors")
    assert not [key for key in optimizer if key.startswith("raw.")]  # model.safetensors is them already
    assert not (best / "optimizer.safetensors").exists() and not (best / "state.json").exists()
    if result.history[-1]["valid"]["gap"] >= max(h["valid"]["gap"] for h in result.history):
        # best is last's epoch: the same file, not a second copy
        assert (best / "model.safetensors").stat().st_ino == (last / "model.safetensors").stat().st_ino
    model_bytes = (last / "model.safetensors").stat().st_size
    assert (last / "optimizer.safetensors").stat().st_size < 2.2 * model_bytes  # AdamW's two moments


def test_resume_without_raw_copy_is_exact_and_ema_keeps_it(tmp_path):
    from safetensors.torch import load_file

    from vtag.tasks.train import TrainConfig, train

    _train_tiny(tmp_path / "straight")
    split = tmp_path / "split"
    config = TrainConfig(train=[str(SAMPLE)], valid=[str(SAMPLE)], model="fc-early-fusion", epochs=1,
                         batch_size=64, out=str(split), device="cpu", model_overrides={"hidden": 16},
                         keep_optimizer=True)  # extended below
    train(config, log=lambda line: None)
    config.epochs, config.resume = 2, True
    train(config, log=lambda line: None)
    a = load_file(tmp_path / "straight" / "last" / "model.safetensors")
    b = load_file(split / "last" / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    _train_tiny(tmp_path / "ema", ema=0.9, keep_optimizer=True)
    assert any(key.startswith("raw.") for key in load_file(tmp_path / "ema" / "last" / "optimizer.safetensors"))
