"""`vtag extract`, `vtag classify`, `vtag batch`: from video files to features and labels."""

from __future__ import annotations

from pathlib import Path

import typer

from vtag.cli.app import EXIT_INTERRUPTED, app, console, err_console
from vtag.errors import VtagError


SHARD_HELP = ("I/N: only this job's share of the files (a stable split by each file's path relative to the "
              "folder given), so N jobs cover every file once.")
RAY_HELP = "Spread decoding and inference over a Ray cluster (pip install 'vtag[ray]'); a local one unless --ray-address."
RAY_ADDRESS_HELP = "With --ray: auto (the running cluster) or HOST:PORT of one (implies --ray)."


@app.command()
def extract(
    videos: list[str] = typer.Argument(..., help="Video or audio files (or s3:// gs:// https:// URLs)."),
    output: Path = typer.Option(..., "--output", "-o", help="The TFRecord file to write (one record per input); with --records-per-shard, the name shards are numbered after."),
    level: str = typer.Option("frame", "--level", help="frame: SequenceExamples with per-second rgb/audio bytes; "
                              "video: Examples with mean_rgb/mean_audio."),
    max_frames: int = typer.Option(300, "--max-frames", min=1, help="At most this many frames (seconds) per video, as YT8M."),
    device: str = typer.Option("auto", help="auto (cuda when available), cpu or cuda."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Frames per Inception batch."),
    random_weights: bool = typer.Option(False, "--random-weights", help=(
        "Use randomly initialised extractors (for tests and benchmarks): the features are NOT meaningful.")),
    records_per_shard: int = typer.Option(None, "--records-per-shard", min=1, help=(
        "Write OUT-00000.tfrecord, OUT-00001.tfrecord, ... of N videos each and OUT.manifest.jsonl; "
        "a rerun skips the videos the manifest lists.")),
    shard: str = typer.Option(None, "--shard", help="I/N: only this job's share of the inputs (a stable split by each path as given)."),
    ray: bool = typer.Option(False, "--ray", help=RAY_HELP),
    ray_address: str = typer.Option(None, "--ray-address", help=RAY_ADDRESS_HELP),
) -> None:
    """Extract YouTube-8M features (Inception-v3 + PCA rgb, VGGish + PCA audio) from videos into YT8M records."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from vtag.cli.inputs import require_extractor_weights

    if level not in ("frame", "video"):
        raise VtagError(f"--level {level}: use frame or video")
    require_extractor_weights(videos, random_weights)  # before the seconds torch takes to import
    from vtag.features.extract import FeatureExtractor, extract_to_records
    if random_weights:
        err_console.print("[bold yellow]warning: --random-weights: the extractors are randomly initialised; "
                          f"the features written to {output} are NOT meaningful (tests and benchmarks only).[/]")
    extractor = FeatureExtractor(random_weights=random_weights, device=device, max_frames=max_frames,
                                 batch_size=batch_size)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[seconds]}"),
                        TimeElapsedColumn(), console=err_console, transient=True)
    tasks: dict[Path, int] = {}

    def on_start(path: Path) -> None:
        tasks[path] = progress.add_task(Path(str(path)).name, total=None, seconds="")

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
        run = extract_to_records
        if ray or ray_address is not None:
            from functools import partial

            from vtag.tasks.distributed import extract_on_ray

            run = partial(extract_on_ray, address=ray_address)
        summary = run(videos, output, level=level, extractor=extractor, on_start=on_start,
                      on_progress=on_progress, on_done=on_done, shard=shard, records_per_shard=records_per_shard)
    note = "  [bold yellow](random weights: NOT meaningful)[/]" if summary.random_weights else ""
    if summary.shards:
        console.print(f"wrote {len(summary.written)} {level}-level records into {len(summary.shards)} shards "
                      f"({summary.shards[0].name} ... {summary.shards[-1].name}) in {summary.seconds:.1f} s{note}",
                      highlight=False, soft_wrap=True)
    elif records_per_shard is not None and not summary.failed:
        console.print("nothing to do: every input is already in the manifest", highlight=False)
    elif summary.written:
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


VOCAB_HELP = ("Labels for raw videos: 2018 (3,862 classes, default) or 2017 (4,716, the paper's); picks the shipped "
              "model of that vocabulary. Record files use their own (detected).")


def record_line(prediction) -> str:
    """`ID  label 0.912, label 0.405, ...`: a shard's 300 records read as 300 lines, not 300 tables
    (rendering those took longer than scoring them)."""
    labels = ", ".join(f"{label.name} {label.score:.3f}" for label in prediction.labels)
    marks = "".join([f"  (no {' or '.join(prediction.missing)})" if prediction.missing else "",
                     "  (random weights: not meaningful)" if prediction.random_weights else ""])
    return f"{prediction.source}  {labels}{marks}"


def _warn_random_weights() -> None:
    err_console.print(
        "[bold yellow]warning:[/] --random-weights: features come from randomly initialised extractors; "
        "the labels below are NOT meaningful."
    )


@app.command()
def classify(
    inputs: list[str] = typer.Argument(..., help="Video or audio files, YT8M record files (every record is tagged), quoted "
                                       "globs or folders of record files; local or s3:// gs:// https:// URLs; - reads paths from stdin."),
    model: str = typer.Option(None, "--model", "-m", help="Model folder (or its config.json) or a trained registry name; default: the shipped model."),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, help="How many labels per input."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    as_json: bool = typer.Option(False, "--json", help="JSON Lines: one object per record or file (docs/JSON.md)."),
    fmt: str = typer.Option(None, "--format", help="table (default), json, or kaggle (Google's submission CSV; needs -o)."),
    output: Path = typer.Option(None, "--output", "-o", help="Write the JSON Lines or the Kaggle CSV to this file "
                                "(atomically); alone, .csv means --format kaggle and anything else JSON Lines."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable records in record files instead of stopping."),
    random_weights: bool = typer.Option(False, "--random-weights", help=RANDOM_WEIGHTS_HELP),
    segments: float = typer.Option(None, "--segments", help="Also tag each window of this many seconds (YT8M 2019: 5); JSON gets `segments`."),
    plot: Path = typer.Option(None, "--plot", help="Draw a tag timeline (.png or .svg) of the one input; needs vtag[plot]."),
    runtime: str = typer.Option("auto", "--runtime", help="auto (numpy for record files where it runs the model on the CPU, "
                                "else torch), torch, numpy (no PyTorch: the early-fusion FC models), or onnx "
                                "(pip install 'vtag[onnx]')."),
    vocab: str = typer.Option(None, "--vocab", help=VOCAB_HELP),
) -> None:
    """Tag videos, audio files or YT8M record files with the top labels of a fusion model."""
    from vtag.devices import fewer_blas_threads_when_busy

    fewer_blas_threads_when_busy()  # before NumPy loads: scoring record files is its matrix products
    from vtag.cli.app import note
    from vtag.cli.inputs import classify_inputs, require_extractor_weights
    from vtag.cli.meta import check_model_name
    from vtag.cli.output import classify_format
    from vtag.cli.progress import media_progress
    from vtag.cli.report import plot_hook
    from vtag.tasks.classify import classify_paths, is_record_file

    # everything a typo or a missing file can break is checked before a model or torch loads
    fmt = classify_format(fmt, as_json, output)
    check_model_name(model)
    inputs = classify_inputs(inputs)
    require_extractor_weights(inputs, random_weights)
    records = sum(1 for raw in inputs if is_record_file(raw))
    note(f"{len(inputs)} inputs: {records} record files, {len(inputs) - records} video or audio files; "
         f"model {model or 'the shipped one'}, device {device}, output {fmt}" + (f" to {output}" if output else ""))
    segments, thumbnails, after = plot_hook(inputs, plot, segments)
    if random_weights:
        _warn_random_weights()
    with media_progress() as on_progress:
        predictions = after(classify_paths(inputs, model=model, top_k=top_k, device=device, random_weights=random_weights,
                                           skip_bad=skip_bad, segments=segments, thumbnails=thumbnails, runtime=runtime,
                                           on_progress=on_progress, vocabulary=vocab))
        _show_predictions(predictions, fmt, output)


def _show_predictions(predictions, fmt: str, output: Path | None) -> None:
    from rich.table import Table

    from vtag.cli.output import emit_lines, json_line
    from vtag.tasks.classify import kaggle_rows

    if fmt in ("kaggle", "json"):
        lines = (kaggle_rows(predictions) if fmt == "kaggle"
                 else (json_line(p.to_json(), p.source) for p in predictions))
        count = emit_lines(lines, output)
        if output is not None:
            err_console.print(f"wrote {count - (fmt == 'kaggle')} {'rows' if fmt == 'kaggle' else 'lines'} to {output}",
                              highlight=False)
        return
    for p in predictions:
        if p.source != p.path and not p.segments:  # a record of a record file: one plain line each
            print(record_line(p))
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
        if p.segments:
            from vtag.cli.report import segments_table

            console.print(segments_table(p))


@app.command()
def batch(
    folders: list[str] = typer.Argument(..., help="Folders (or files, or s3:// gs:// https:// URLs) holding videos and audio files; with --merge, the results files to join."),
    output: Path = typer.Option(None, "--output", "-o", help="results.jsonl or results.csv; reruns resume from it."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into subfolders."),
    workers: int = typer.Option(2, "--workers", "-w", min=0, help="Decoding processes (0: decode in this process)."),
    model: str = typer.Option(None, "--model", "-m", help="Model folder or trained registry name; default: the shipped model."),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, help="How many labels each file gets in the results."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    max_frames: int = typer.Option(300, "--max-frames", min=1, help="At most this many seconds per video, as YT8M."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Retry files that failed in an earlier run."),
    random_weights: bool = typer.Option(False, "--random-weights", help=RANDOM_WEIGHTS_HELP),
    shard: str = typer.Option(None, "--shard", help=SHARD_HELP),
    ray: bool = typer.Option(False, "--ray", help=RAY_HELP),
    ray_address: str = typer.Option(None, "--ray-address", help=RAY_ADDRESS_HELP),
    merge: Path = typer.Option(None, "--merge", help="Join the results files given as arguments into this file (refuses a file found in two parts)."),
    expect: list[str] = typer.Option([], "--expect", help="With --merge: the folders the jobs tagged; files no part holds are reported missing."),
    segments: float = typer.Option(None, "--segments", help="Also tag each window of this many seconds (JSONL only)."),
    report: Path = typer.Option(None, "--report", help="Also write an HTML report of the results file (.html)."),
    thumbnails: bool = typer.Option(None, "--thumbnails/--no-thumbnails", help="Keep a small keyframe JPEG in each JSONL line (default: on with --report)."),
    runtime: str = typer.Option("torch", "--runtime", help="torch, or onnx: the fusion model in onnxruntime (pip install 'vtag[onnx]')."),
    vocab: str = typer.Option(None, "--vocab", help=VOCAB_HELP),
) -> None:
    """Tag every video or audio file in folders; resumable. Exit code 1 when some files failed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from vtag.tasks.batch import EXIT_SOME_FAILED, run_batch

    if merge is not None:
        from vtag.cli.distributed import merge_command

        merge_command(merge, folders, expect, recursive)
        return
    if output is None:
        raise VtagError("vtag batch needs -o results.jsonl (or .csv): the file results go to, and resume from")
    if report is not None and report.suffix.lower() not in (".html", ".htm"):
        raise VtagError(f"--report {report}: the report is an HTML page: give a .html file name")
    if thumbnails is None:
        thumbnails = report is not None and output.suffix.lower() in (".jsonl", ".json", ".ndjson")
    run = run_batch
    if ray or ray_address is not None:
        from functools import partial

        from vtag.tasks.distributed import batch_on_ray

        run = partial(batch_on_ray, address=ray_address)

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
        summary = run(folders, output, recursive=recursive, workers=workers, model=model, device=device,
                            random_weights=random_weights, retry_failed=retry_failed, top_k=top_k,
                            max_frames=max_frames, on_file=on_file, on_start=on_start, shard=shard,
                            segments=segments, thumbnails=thumbnails, runtime=runtime, vocabulary=vocab)
    rate = summary.video_seconds / summary.elapsed_s if summary.elapsed_s else 0.0
    err_console.print(
        f"{summary.done} tagged, {summary.failed} failed, {summary.skipped} already done (of {summary.total}); "
        f"{summary.video_seconds:.0f} video-seconds in {summary.elapsed_s:.1f} s ({rate:.1f} video-s/s); results in {output}"
    )
    if report is not None:
        from vtag.tasks.report import write_report

        page, cards = write_report(output, report)
        err_console.print(f"report: {page} ({cards} videos)", highlight=False)
    if summary.interrupted:
        err_console.print("[yellow]interrupted:[/] rerun the same command to resume")
        raise typer.Exit(EXIT_INTERRUPTED)
    if summary.failed:
        raise typer.Exit(EXIT_SOME_FAILED)
