"""`vtag report`, and the pieces `vtag classify --segments/--plot` shows.

`vtag report results.jsonl -o report.html` rebuilds a batch's HTML page; `vtag report RUN_DIR`
draws a training run's curves. Registered on the app by vtag/cli/__init__.py.
"""

from __future__ import annotations

from pathlib import Path

import typer

from vtag.cli.app import app, console, err_console
from vtag.errors import VtagError

TIMELINE_THUMBNAILS = 8
DEFAULT_PLOT_SEGMENTS = 5.0


def plot_hook(inputs: list[Path], plot: Path | None, segments: float | None):
    """For `classify --plot`: check up front (before a model loads), turn segments on (5 s unless
    given) and keep thumbnails; returns (segments, thumbnails, wrap) where wrap(predictions) draws the
    one prediction as it passes through."""
    from vtag.tasks.segments import check_seconds

    if segments is not None:
        check_seconds(segments)
    if plot is None:
        return segments, 0, lambda predictions: predictions
    from vtag.tasks.plots import check_output, require_matplotlib

    require_matplotlib()
    check_output(plot)
    if len(inputs) != 1:
        raise VtagError(f"--plot draws one video's timeline: give one input, not {len(inputs)}")

    def wrap(predictions):
        from vtag.tasks.plots import plot_timeline

        for count, prediction in enumerate(predictions):
            if count:
                raise VtagError(f"{inputs[0]}: holds more than one record; --plot draws one video's timeline")
            plot_timeline(prediction, plot)
            err_console.print(f"timeline: {plot}", highlight=False)
            yield prediction

    return segments or DEFAULT_PLOT_SEGMENTS, TIMELINE_THUMBNAILS, wrap


def segments_table(prediction, labels_per_segment: int = 3):
    from rich.table import Table

    table = Table(title=f"{len(prediction.segments)} segments", title_justify="left")
    table.add_column("segment", no_wrap=True)
    table.add_column("top labels")
    for segment in prediction.segments:
        top = ", ".join(f"{label.name} {label.score:.2f}" for label in segment.labels[:labels_per_segment])
        table.add_row(f"{segment.start:.0f}-{segment.end:.1f} s", top)
    return table


@app.command("report")
def report_command(
    source: Path = typer.Argument(..., help="A `vtag batch` results file (.jsonl/.csv), or a `vtag train` run folder."),
    output: Path = typer.Option(None, "--output", "-o", help="The page (.html) or picture (.png/.svg) to write; "
                                "default: beside the results (same name, .html) or RUN_DIR/curves.png."),
    title: str = typer.Option(None, "--title", help="The report page's title."),
) -> None:
    """Make a batch's HTML report (one self-contained page) or draw a training run's curves."""
    if source.is_dir():
        from vtag.tasks.training_log import write_curves

        console.print(f"wrote {write_curves(source, output)}", highlight=False)
        return
    from vtag.tasks.report import write_report

    page, cards = write_report(source, output, title)
    console.print(f"wrote {page}: {cards} videos", highlight=False)
