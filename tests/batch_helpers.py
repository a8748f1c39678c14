"""Helpers the `vtag batch` tests share (tests/tasks/test_batch.py, tests/hostile/test_hostile_batch.py)."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

from media_factory import make_media


def batch_command(folder, out, model, *extra) -> list[str]:
    """`vtag batch FOLDER -o OUT` in one process, on random extractor weights and the given model."""
    return [sys.executable, "-m", "vtag", "batch", str(folder), "-o", str(out), "--workers", "0",
            "--model", str(model), "--random-weights", "--device", "cpu", *extra]


def silent_clips(folder: Path, names: list[str], duration_s: float = 2.0) -> Path:
    """`folder` holding a short video without audio under each of `names`."""
    folder.mkdir()
    for name in names:
        make_media(folder / name, duration_s=duration_s, audio=False)
    return folder


def results_records(path: Path, fmt: str) -> list[dict]:
    """The records of a results file parsed the strict way: JSON split on "\\n", CSV by the csv module."""
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_bytes().decode("utf-8").split("\n") if line]
    rows = list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8"), newline="")))
    assert rows[0] == ["path", "labels", "error"]
    return [{"path": r[0], **({"error": r[2]} if r[2] else {"labels": r[1]})} for r in rows[1:]]
