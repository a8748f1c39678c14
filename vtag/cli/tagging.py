"""`vtag extract`, `vtag classify`, `vtag batch`: from video files to features and labels."""

from __future__ import annotations

from pathlib import Path

import typer

from vtag.cli.app import EXIT_INTERRUPTED, app, console, err_console
from vtag.errors import VtagError


@app.command()
def extract(
    videos: list[Path] = typer.Argument(..., help="Video or audio files."),
    output: Path = typer.Option(..., "--output", "-o", help="The TFRecord file to write (one record per input)."),
    level: str = typer.Option("frame", "--level", help="frame: SequenceExamples with per-second rgb/audio bytes; "
                              "video: Examples with mean_rgb/mean_audio."),
    max_frames: int = typer.Option(300, "--max-frames", min=1, help="At most this many frames (seconds) per video, as YT8M."),
    device: str = typer.Option("auto", help="auto (cuda when available), cpu or cuda."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Frames per Inception batch."),
    random_weights: bool = typer.Option(False, "--random-weights", help=(
        "Use randomly initialised extractors (for tests and benchmarks): the features are NOT meaningful.")),
) -> None:
    """Extract YouTube-8M features (Inception-v3 + PCA rgb, VGGish + PCA audio) from videos into YT8M records."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from vtag.features.extract import FeatureExtractor, extract_to_records

    if level not in ("frame", "video"):
        raise VtagError(f"--level {level}: use frame or video")
    if random_weights:
        err_console.print("[bold yellow]warning: --random-weights: the extractors are randomly initialised; "
                          f"the features written to {output} are NOT meaningful (tests and benchmarks only).[/]")
    extractor = FeatureExtractor(random_weights=random_weights, device=device, max_frames=max_frames,
                                 batch_size=batch_size)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[seconds]}"),
                        TimeElapsedColumn(), console=err_console, transient=True)
    tasks: dict[Path, int] = {}

    def on_start(path: Path) -> None:
        tasks[path] = progress.add_task(path.name, total=None, seconds="")

    def on_progress(path: Path, done: float, total: float | None) -> None:
        shown = f"{done:.0f}/{total:.0f} s" if total else f"{done:.0f} s"
        progress.update(tasks[path], completed=done, total=total, seconds=shown)

    def on_done(path: Path, features, error: str | None) -> None:
        progress.remove_task(tasks.pop(path))
        if error is not None:
            err_console.print(f"[red]failed[/] {error}", highlight=False, soft_wrap=True)
            return
        lacks = f"  [yellow](no {' or '.join(features.missing)}: written as zeros)[/]" if features.missing else ""
        err_console.print(f"[green]ok[/] {path}: {features.num_frames} frames{lacks}", highlight=False, soft_wrap=True)

    with progress:
        summary = extract_to_records(videos, output, level=level, extractor=extractor, on_start=on_start,
                                     on_progress=on_progress, on_done=on_done)
    note = "  [bold yellow](random weights: NOT meaningful)[/]" if summary.random_weights else ""
    if summary.written:
        console.print(f"wrote {len(summary.written)} {level}-level records to {summary.output} "
                      f"in {summary.seconds:.1f} s{note}", highlight=False, soft_wrap=True)
    if summary.failed:
        nothing = "; nothing written" if not summary.written else ""
        err_console.print(f"[red]{len(summary.failed)} of {len(summary.failed) + len(summary.written)} "
                          f"files failed{nothing}[/]")
        raise typer.Exit(1)


# ---- tagging: classify, batch ---------------------------------------------------------------------

RANDOM_WEIGHTS_HELP = (
    "Run the feature extractors with randomly initialised weights (for tests and benchmarks): "
    "the labels are NOT meaningful."
)


def _warn_random_weights() -> None:
    err_console.print(
        "[bold yellow]warning:[/] --random-weights: features come from randomly initialised extractors; "
        "the labels below are NOT meaningful."
    )


@app.command()
def classify(
    inputs: list[Path] = typer.Argument(..., help="Video or audio files, or YT8M TFRecord files (every record is tagged)."),
    model: str = typer.Option(None, "--model", "-m", help="Model folder (or its config.json) or a trained registry name; default: the shipped model."),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, help="How many labels per input."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per input on stdout."),
    fmt: str = typer.Option("table", "--format", help="table, json, or kaggle (Google's submission CSV; needs -o)."),
    output: Path = typer.Option(None, "--output", "-o", help="With --format kaggle: the CSV file to write."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable records in record files instead of stopping."),
    random_weights: bool = typer.Option(False, "--random-weights", help=RANDOM_WEIGHTS_HELP),
    runtime: str = typer.Option("torch", "--runtime", help="torch, or onnx: the fusion model in onnxruntime (pip install 'vtag[onnx]')."),
) -> None:
    """Tag videos, audio files or YT8M record files with the top labels of a fusion model."""
    import json

    from rich.table import Table

    from vtag.tasks.classify import classify_paths, kaggle_rows
    from vtag.io.atomic import atomic_write_text

    fmt = "json" if as_json else fmt
    if fmt not in ("table", "json", "kaggle"):
        raise VtagError(f"--format {fmt}: use table, json or kaggle")
    if fmt == "kaggle" and output is None:
        raise VtagError("--format kaggle writes a CSV file: add -o FILE.csv")
    if random_weights:
        _warn_random_weights()
    predictions = classify_paths(inputs, model=model, top_k=top_k, device=device, random_weights=random_weights, skip_bad=skip_bad,
                                 runtime=runtime)
    if fmt == "kaggle":
        rows = list(kaggle_rows(predictions))
        atomic_write_text(output, rows)
        err_console.print(f"wrote {len(rows) - 1} rows to {output}")
        return
    for p in predictions:
        if fmt == "json":
            print(json.dumps(p.to_json(), ensure_ascii=False))
            continue
        title = p.source if p.source == p.path else f"{p.source}  [dim]({p.path})[/]"
        if p.missing:
            title += f"  [yellow](no {' or '.join(p.missing)})[/]"
        if p.random_weights:
            title += "  [bold yellow](random weights: not meaningful)[/]"
        table = Table(title=title, title_justify="left")
        table.add_column("rank", justify="right")
        table.add_column("label")
        table.add_column("score", justify="right")
        table.add_column("vertical")
        for rank, label in enumerate(p.labels, 1):
            table.add_row(str(rank), label.name, f"{label.score:.3f}", label.vertical or "")
        console.print(table)


@app.command()
def batch(
    folders: list[Path] = typer.Argument(..., help="Folders (or files) holding videos and audio files."),
    output: Path = typer.Option(..., "--output", "-o", help="results.jsonl or results.csv; reruns resume from it."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into subfolders."),
    workers: int = typer.Option(2, "--workers", "-w", min=0, help="Decoding processes (0: decode in this process)."),
    model: str = typer.Option(None, "--model", "-m", help="Model folder or trained registry name; default: the shipped model."),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    max_frames: int = typer.Option(300, "--max-frames", min=1, help="At most this many seconds per video, as YT8M."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Retry files that failed in an earlier run."),
    random_weights: bool = typer.Option(False, "--random-weights", help=RANDOM_WEIGHTS_HELP),
    runtime: str = typer.Option("torch", "--runtime", help="torch, or onnx: the fusion model in onnxruntime (pip install 'vtag[onnx]')."),
) -> None:
    """Tag every video or audio file in folders; resumable. Exit code 1 when some files failed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from vtag.tasks.batch import EXIT_SOME_FAILED, run_batch

    if random_weights:
        _warn_random_weights()
    progress = Progress(
        TextColumn("[bold]tagging"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=err_console,
    )
    task = None

    def on_start(summary):
        nonlocal task
        if summary.skipped:
            err_console.print(f"resuming: {summary.skipped} of {summary.total} files already in {output}")
        task = progress.add_task("batch", total=summary.total - summary.skipped, status="", rate="")

    def on_file(path, error, summary):
        if error:
            progress.console.print(f"[red]failed:[/] {error}", highlight=False)
        elapsed = progress.tasks[task].elapsed or 1e-9
        progress.update(task, advance=1, status=f"{summary.done} ok, {summary.failed} failed",
                        rate=f"{summary.video_seconds / elapsed:.1f} video-s/s")

    with progress:
        summary = run_batch(folders, output, recursive=recursive, workers=workers, model=model, device=device,
                            random_weights=random_weights, retry_failed=retry_failed, top_k=top_k,
                            max_frames=max_frames, on_file=on_file, on_start=on_start, runtime=runtime)
    rate = summary.video_seconds / summary.elapsed_s if summary.elapsed_s else 0.0
    err_console.print(
        f"{summary.done} tagged, {summary.failed} failed, {summary.skipped} already done (of {summary.total}); "
        f"{summary.video_seconds:.0f} video-seconds in {summary.elapsed_s:.1f} s ({rate:.1f} video-s/s); results in {output}"
    )
    if summary.interrupted:
        err_console.print("[yellow]interrupted:[/] rerun the same command to resume")
        raise typer.Exit(EXIT_INTERRUPTED)
    if summary.failed:
        raise typer.Exit(EXIT_SOME_FAILED)
