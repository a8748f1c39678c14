"""`vtag batch --merge OUT PARTS...`: join the results files of sharded jobs (`--shard I/N`) into one.

A file may appear in one part only: two parts holding the same path mean the jobs overlapped (two
different --shard splits, or one folder tagged twice), and silently keeping either line would hide it,
so the merge stops and names both parts. Failed files are kept as their error lines and counted; with
`expected` (the folders the jobs listed), files that no part holds are reported as missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vtag.errors import VtagError


@dataclass
class MergeSummary:
    output: Path
    parts: int
    files: int = 0
    failed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def merge_results(output: str | Path, parts: Sequence[str | Path], expected: Iterable[str] | None = None) -> MergeSummary:
    """Write every line of `parts` into `output` (atomically), refusing a path found in two parts or
    twice in one. All parts must have the output's format (JSONL or CSV)."""
    from vtag.io.atomic import atomic_write_text
    from vtag.tasks.csv_output import csv_line
    from vtag.tasks.results_file import ResultsFile

    out = ResultsFile(output)
    if not parts:
        raise VtagError("--merge OUT needs the results files to join: vtag batch --merge OUT PART1 PART2 ...")
    seen: dict[str, Path] = {}
    lines: list[str] = []
    summary = MergeSummary(out.path, len(parts))
    for raw in parts:
        part = ResultsFile(raw)
        if part.path.resolve() == out.path.resolve():
            raise VtagError(f"{part.path}: is the merge's output; write the merge to a new file")
        if not part.path.is_file():
            raise VtagError(f"{part.path}: no such results file")
        if part.format != out.format:
            raise VtagError(f"{part.path}: is {part.format.upper()} but {out.path} is {out.format.upper()}; "
                            "merge parts of one format")
        for entry in part._entries():
            # by key: the same file under two spellings of its folder is still one file
            if entry.key in seen:
                where = "twice in" if seen[entry.key] == part.path else f"in both {seen[entry.key]} and"
                raise VtagError(f"{entry.path}: appears {where} {part.path}: the parts overlap "
                                "(were they made with different --shard splits?)")
            seen[entry.key] = part.path
            lines.append(entry.text)
            if not entry.ok:
                summary.failed.append(entry.path)
    if expected is not None:
        summary.missing = sorted(name for name in set(expected) if out.key(name) not in seen)
    summary.files = len(lines)
    header = [csv_line(ResultsFile.CSV_HEADER)] if out.format == "csv" else []
    atomic_write_text(out.path, header + lines)
    return summary
