"""CLI helpers for the many-machine options of `vtag batch` (`--merge`); the options themselves are
on the commands in vtag/cli/tagging.py."""

from __future__ import annotations

from pathlib import Path

import typer


def merge_command(output: Path, parts: list[str], expect: list[str], recursive: bool) -> None:
    from vtag.cli.app import err_console
    from vtag.tasks.batch import EXIT_SOME_FAILED, find_media
    from vtag.tasks.merge import merge_results

    expected = [str(p) for p in find_media(expect, recursive)] if expect else None
    summary = merge_results(output, parts, expected)
    err_console.print(f"merged {summary.files} files from {summary.parts} parts into {summary.output}; "
                      f"{len(summary.failed)} failed" + (f", {len(summary.missing)} missing" if expected is not None else ""),
                      highlight=False, soft_wrap=True)
    for path in summary.failed:
        err_console.print(f"[red]failed:[/] {path}", highlight=False, soft_wrap=True)
    for path in summary.missing:
        err_console.print(f"[yellow]missing:[/] {path}", highlight=False, soft_wrap=True)
    if summary.failed or summary.missing:
        raise typer.Exit(EXIT_SOME_FAILED)
