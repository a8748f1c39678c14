"""What the commands write: JSON Lines (docs/JSON.md) that never hold NaN, on stdout or, with -o, to a
file written atomically; the output format of `vtag classify` from --json / --format / -o."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

from vtag.errors import VtagError

CLASSIFY_FORMATS = ("table", "json", "kaggle")


def _first_bad_number(obj, where: str = "") -> str | None:
    if isinstance(obj, float) and not math.isfinite(obj):
        return where or "a value"
    if isinstance(obj, dict):
        for key, value in obj.items():
            found = _first_bad_number(value, f"{where}.{key}" if where else str(key))
            if found:
                return found
    if isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            found = _first_bad_number(value, f"{where}[{index}]")
            if found:
                return found
    return None


def json_line(obj, what: str = "") -> str:
    """One JSON object as one line. NaN and infinity are not JSON: a score that became one is a broken
    model or input, so it is an error here rather than a `NaN` no JSON parser accepts."""
    try:
        return json.dumps(obj, ensure_ascii=False, allow_nan=False)
    except ValueError:
        field = _first_bad_number(obj) or "a value"
        about = f"{what}: " if what else ""
        raise VtagError(f"{about}{field} is not a number (NaN or infinity), which JSON cannot hold: "
                        "the model or the input is broken (check it with `vtag eval` or `vtag info`)") from None


def classify_format(fmt: str | None, as_json: bool, output: Path | None) -> str:
    """table, json or kaggle. --json is --format json; with -o and no format, the file's suffix
    chooses (.csv: kaggle, anything else: JSON Lines), because a table is for the terminal."""
    if as_json and fmt not in (None, "json"):
        raise VtagError(f"--json and --format {fmt} ask for two formats: give one of them")
    chosen = "json" if as_json else fmt
    if chosen is None:
        if output is None:
            chosen = "table"
        else:
            chosen = "kaggle" if output.suffix.lower() == ".csv" else "json"
    if chosen not in CLASSIFY_FORMATS:
        raise VtagError(f"--format {chosen}: use table, json or kaggle")
    if chosen == "kaggle" and output is None:
        raise VtagError("--format kaggle writes a CSV file: add -o FILE.csv")
    if chosen == "table" and output is not None:
        raise VtagError(f"-o {output}: a table is for the terminal; write --format json or kaggle to a file")
    return chosen


def emit_lines(lines: Iterable[str], output: Path | None) -> int:
    """Each line to stdout, or all of them to `output` (atomic: the file appears whole or not at all).
    Returns how many lines went out."""
    count = 0

    def counted() -> Iterator[str]:
        nonlocal count
        for line in lines:
            count += 1
            yield line if line.endswith("\n") else line + "\n"

    if output is None:
        for line in counted():
            print(line, end="", flush=True)
    else:
        from vtag.io.atomic import atomic_write_text

        atomic_write_text(output, counted())
    return count
