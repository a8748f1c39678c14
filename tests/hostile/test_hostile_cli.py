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
