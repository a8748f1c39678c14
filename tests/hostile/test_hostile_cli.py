"""The command line as a user meets it (issue 11): an installed wheel, -o, help and version, globs and
stdin, error wording, JSON shapes, the size of a default training run, the cache folder."""

from __future__ import annotations

import json
import os
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


@pytest.mark.timeout(300)
def test_a_built_wheel_classifies_records_without_the_checkout(tmp_path):
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
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels), str(source)], check=True, capture_output=True, timeout=240)
    wheel = next(wheels.glob("vtag-*.whl"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=240)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site), COLUMNS="100")
    done = subprocess.run([sys.executable, "-m", "vtag", "classify", str(SAMPLE), "--top-k", "3", "--json"],
                          capture_output=True, text=True, env=env, cwd=elsewhere, timeout=240)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert lines and all(len(line["labels"]) == 3 for line in lines)
    where = subprocess.run([sys.executable, "-c", "import vtag; print(vtag.__file__)"], capture_output=True,
                           text=True, env=env, cwd=elsewhere, check=True).stdout
    assert str(site) in where  # the wheel answered, not the checkout


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
    assert done.stderr.strip().splitlines() == ["error: command 'clasify' is unknown: did you mean classify, labels?"]


def test_shell_completion_is_enabled():
    shown = run_cli("--show-completion", "bash")
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
