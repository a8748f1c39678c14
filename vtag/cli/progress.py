"""Progress bars on stderr for the commands that take a while on one input (`classify` of media,
`eval`): shown only to a person watching a terminal, and never with --quiet, so pipes and logs get
results only."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from vtag.cli.app import err_console, show_progress


def _progress(*columns):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    # results go to stdout as they come: the bar must not capture them into stderr
    return Progress(TextColumn("{task.description}"), BarColumn(), *columns, TimeElapsedColumn(),
                    console=err_console, transient=True, redirect_stdout=False, redirect_stderr=False)


@contextmanager
def media_progress():
    """Yields on_progress(path, seconds done, total seconds or None) for `classify_paths`, or None."""
    if not show_progress():
        yield None
        return
    from rich.progress import TextColumn

    bars = _progress(TextColumn("{task.fields[seconds]}"))
    tasks: dict[str, int] = {}

    def on_progress(path, done: float, total: float | None) -> None:
        key = str(path)
        if key not in tasks:
            for old in list(tasks):  # one file at a time: the previous one is done
                bars.remove_task(tasks.pop(old))
            tasks[key] = bars.add_task(Path(key).name, total=None, seconds="")
        shown = f"{done:.0f}/{total:.0f} s" if total else f"{done:.0f} s"
        bars.update(tasks[key], completed=done, total=total, seconds=shown)

    with bars:
        yield on_progress


@contextmanager
def scoring_progress(description: str):
    """Yields on_scored(done, total) for `evaluate`, or None; pulses until the first batch is scored
    (reading the records and loading the model)."""
    if not show_progress():
        yield None
        return
    from rich.progress import MofNCompleteColumn

    bars = _progress(MofNCompleteColumn())
    task = bars.add_task(description, total=None)

    def on_scored(done: int, total: int) -> None:
        bars.update(task, completed=done, total=total)

    with bars:
        yield on_scored
