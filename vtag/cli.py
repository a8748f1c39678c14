"""The `vtag` command line: a thin Typer layer over functions that are just as usable from Python.

Each command parses options, calls one library function and renders its result with Rich. Errors the
user can fix arrive as `VtagError` and are printed as one line (exit code 2); nothing else belongs here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from vtag.errors import VtagError

app = typer.Typer(
    name="vtag",
    help="Tag videos with YouTube-8M labels: extract features, train, evaluate and classify.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


@app.callback()
def _root() -> None:
    """vtag: YouTube-8M video tagging."""


# ---- records, vocabularies: info, labels ----------------------------------------------------------


@app.command("info")
def info(
    paths: list[str] = typer.Argument(..., help="Record files, globs or directories."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Count bad records instead of stopping at the first."),
) -> None:
    """Describe YT8M / AudioSet record files: schema, record count, labels, frames, bad records."""
    import json
    from pathlib import Path

    from rich import box
    from rich.table import Table

    from vtag.records import expand_paths, inspect_file

    infos = [inspect_file(path, skip_bad=skip_bad) for path in expand_paths(paths)]
    if as_json:
        typer.echo(json.dumps([i.as_dict() for i in infos], indent=2))
        return
    # file names alone where they are unique keep the table readable in 80 columns
    names = [Path(i.path).name for i in infos]
    if len(set(names)) < len(names):
        names = [str(Path(Path(i.path).parent.name) / Path(i.path).name) for i in infos]
    table = Table(box=box.SIMPLE_HEAD)
    # max label is in --json only: eight columns do not fit 80 characters
    for column in ("file", "kind", "schema", "records", "labelled", "frames", "bad"):
        table.add_column(column, justify="right" if column in ("records", "labelled", "bad") else "left",
                         no_wrap=column == "kind", overflow="fold")
    for name, i in zip(names, infos):
        frames = "-" if i.frames is None else f"{i.frames[0]}/{i.frames[1]:.1f}/{i.frames[2]}"
        bad = f"[red]{i.bad}[/]" if i.bad else "0"
        table.add_row(name, i.kind, i.schema, f"{i.records:,}", f"{i.labelled:,}", frames, bad)
    if len(infos) > 1:
        table.add_section()
        table.add_row(f"{len(infos)} files", "", "", f"{sum(i.records for i in infos):,}",
                      f"{sum(i.labelled for i in infos):,}", "", str(sum(i.bad for i in infos)))
    console.print(table)
    if any(i.frames for i in infos):
        console.print("frames: min/mean/max per record", style="dim")


@app.command("labels")
def labels(
    query: str = typer.Argument(None, help="Text to search for in names, Knowledge Graph ids and verticals."),
    vocab: str = typer.Option("2018", "--vocab", help="2017, 2018 or a vocabulary CSV file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List a YT8M vocabulary, or search it."""
    import json

    from rich.table import Table

    from vtag.vocab import load_vocabulary

    vocabulary = load_vocabulary(vocab)
    found = vocabulary.search(query) if query else list(range(len(vocabulary)))
    rows = [{"index": i, "name": vocabulary.names[i], "kg_id": vocabulary.kg_ids[i],
             "verticals": list(vocabulary.verticals[i])} for i in found]
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    title = f"{vocabulary.source} vocabulary: {len(found):,} of {len(vocabulary):,} classes"
    table = Table(title=title + (f" matching {query!r}" if query else ""), title_justify="left")
    for column in ("index", "name", "KG id", "vertical"):
        table.add_column(column, justify="right" if column == "index" else "left")
    for row in rows:
        table.add_row(str(row["index"]), row["name"], row["kg_id"], " / ".join(row["verticals"]))
    console.print(table)
    if query and not found:
        err_console.print(f"no class matches {query!r}")

# ---- models ---------------------------------------------------------------------------------------


@app.command("models")
def models(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    input_spec: str = typer.Option("mean", "--input-spec", help="Count parameters for 'mean' or 'mean+std' inputs."),
) -> None:
    """List the model zoo: the paper's models, their parameters here and in the paper."""
    import json

    from rich.table import Table

    from vtag.models import paper_table

    rows = paper_table(input_spec)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"models at the paper's configuration (4,716 classes, {input_spec} inputs)", title_justify="left")
    for column in ("name", "paper's title", "params", "paper", "diff"):
        table.add_column(column, justify="left" if column in ("name", "paper's title") else "right",
                         no_wrap=column != "paper's title")
    for r in rows:
        diff = r["difference_pct"]
        style = "green" if abs(diff) <= 3 else "red"
        table.add_row(r["name"], r["title"], f"{r['params'] / 1e6:.2f}M", f"{r['paper_params'] / 1e6:.0f}M",
                      f"[{style}]{diff:+.2f}%[/]")
    console.print(table)

# ---- training and evaluation: train, eval ---------------------------------------------------------


@app.command("train")
def train_command(
    train: list[str] = typer.Option(..., "--train", help="Training records: files, folders or quoted globs (repeatable)."),
    valid: list[str] = typer.Option([], "--valid", help="Validation records (repeatable); best checkpoint by their GAP."),
    model: str = typer.Option("attend-fusion", "--model", help="Registry model name (`vtag models`)."),
    epochs: int = typer.Option(20, "--epochs", help="Epochs (paper: 20)."),
    lr: float = typer.Option(1e-4, "--lr", help="AdamW learning rate (paper: 1e-4)."),
    dropout: float = typer.Option(0.4, "--dropout", help="Dropout (paper: 0.4)."),
    batch_size: int = typer.Option(256, "--batch-size", help="Batch size per process."),
    weight_decay: float = typer.Option(0.01, "--weight-decay", help="AdamW weight decay."),
    out: str = typer.Option(None, "--out", help="Run folder (default runs/MODEL)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out where it stopped."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    input_spec: str = typer.Option(None, "--input-spec", help="mean or mean+std (default mean)."),
    vocab: str = typer.Option(None, "--vocab", help="2017 or 2018 (default: detected from the records)."),
    workers: int = typer.Option(0, "--workers", help="DataLoader workers (with --stream)."),
    seed: int = typer.Option(0, "--seed", help="Seed for weights, dropout and data order."),
    hidden: int = typer.Option(None, "--hidden", help="Override the model's hidden width."),
    attention_dim: int = typer.Option(None, "--attention-dim", help="Override the attention dimension."),
    num_heads: int = typer.Option(None, "--num-heads", help="Override the attention head count."),
    schedule: str = typer.Option("constant", "--schedule", help="Learning rate: constant (paper) or cosine."),
    warmup_epochs: float = typer.Option(0.0, "--warmup-epochs", help="Linear learning-rate warm-up, in epochs."),
    ema: float = typer.Option(0.0, "--ema", help="Keep an exponential moving average of the weights (e.g. 0.999)."),
    bias_init: str = typer.Option("prior", "--bias-init", help="Classifier bias start: prior (label frequencies) or zero."),
    input_dropout: float = typer.Option(0.0, "--input-dropout", help="Dropout on the input features while training."),
    mixup: float = typer.Option(0.0, "--mixup", help="Mixup: blend pairs of videos and their labels, weight ~ Beta(a, a)."),
    input_norm: bool = typer.Option(None, "--input-norm/--no-input-norm", help="Batch norm on each modality's input."),
    experts: int = typer.Option(None, "--experts", help="Mixture of N logistic experts as the classifier (early fusion)."),
    stream: bool = typer.Option(False, "--stream", help="Stream records each epoch instead of loading them once."),
    save_dtype: str = typer.Option("float32", "--save-dtype", help="float32, float16, int8 or int4 (weight matrices) for model.safetensors."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip bad records instead of stopping."),
) -> None:
    """Train a model on YT8M records (AdamW + BCE); checkpoints in --out/best and --out/last."""
    from vtag.train import TrainConfig, train as run_training

    overrides = {k: v for k, v in (("hidden", hidden), ("attention_dim", attention_dim), ("num_heads", num_heads),
                                                 ("input_norm", input_norm), ("experts", experts)) if v is not None}
    config = TrainConfig(train=train, valid=valid, model=model, epochs=epochs, lr=lr, dropout=dropout,
                         batch_size=batch_size, weight_decay=weight_decay, out=out, resume=resume, device=device,
                         input_spec=input_spec, vocab=vocab, workers=workers, seed=seed, model_overrides=overrides,
                         schedule=schedule, warmup_epochs=warmup_epochs, ema=ema, bias_init=bias_init,
                         input_dropout=input_dropout, mixup=mixup, stream=stream,
                         save_dtype=save_dtype, skip_bad=skip_bad)
    result = run_training(config, progress=sys.stderr.isatty(), log=lambda line: console.print(line, highlight=False))
    best = f", best valid GAP {result.best_gap:.4f} in {result.out / 'best'}" if result.best_gap is not None else ""
    console.print(f"done: {result.epochs_done} epochs, last checkpoint in {result.out / 'last'}{best}", highlight=False)


@app.command("eval")
def eval_command(
    records: list[str] = typer.Argument(..., help="Labelled record files, folders or globs."),
    model: str = typer.Option(None, "--model", help="Model folder, or a registry name trained into runs/NAME (default: shipped model)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    threshold: float = typer.Option(0.5, "--threshold", help="Score threshold for F1."),
    batch_size: int = typer.Option(1024, "--batch-size", help="Videos per forward pass."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip bad records instead of stopping."),
) -> None:
    """Score a model on labelled records: GAP@20, Hit@1, PERR, mAP, F1 (Google's eval_util semantics)."""
    import json

    from rich.table import Table

    from vtag.evaluate import evaluate
    from vtag.metrics import F1_MACRO_AVERAGING

    result = evaluate(records, model=model, batch_size=batch_size, device=device, threshold=threshold,
                      skip_bad=skip_bad)
    if as_json:
        keys = ("gap", "hit_at_1", "perr", "map", "f1_micro", "f1_macro", "threshold", "videos")
        typer.echo(json.dumps({k: result[k] for k in keys}))
        return
    table = Table(title=f"{result['model_name']} ({result['model']}) on {result['videos']:,} videos",
                  title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("definition")
    t = result["threshold"]
    for name, key, note in (
        ("GAP@20", "gap", "global AP over every video's top 20"),
        ("Hit@1", "hit_at_1", "top class is a true label"),
        ("PERR", "perr", "precision at k = number of labels"),
        ("mAP", "map", "mean per-class AP over the top 20, classes with positives"),
        ("F1 micro", "f1_micro", f"threshold {t}, micro-averaged over all (video, class) pairs"),
        ("F1 macro", "f1_macro", f"threshold {t}, macro-averaged {F1_MACRO_AVERAGING}"),
    ):
        table.add_row(name, f"{result[key]:.4f}", note)
    console.print(table)

@app.command("memory")
def memory_command(
    records: list[str] = typer.Argument(..., help="Labelled video-level record files, folders or globs to remember."),
    out: str = typer.Option(..., "--out", help="Folder for the model with its memory."),
    model: str = typer.Option(None, "--model", help="Model folder or run name (default: shipped model)."),
    dim: int = typer.Option(1024, "--dim", help="Dimensions kept of each stored video's key (PCA)."),
    bits: int = typer.Option(4, "--bits", help="Bits per key dimension: 4 or 8."),
    k: int = typer.Option(30, "--k", help="Neighbours that vote."),
    temperature: float = typer.Option(0.05, "--temperature", help="Softmax temperature of the votes over cosine similarity."),
    weight: float = typer.Option(0.35, "--weight", help="Share of the neighbours' votes in the final logit."),
    epsilon: float = typer.Option(0.003, "--epsilon", help="Floor added to the votes before taking their logit."),
    audio_weight: float = typer.Option(0.5, "--audio-weight", help="Weight of the audio mean in the key."),
    save_dtype: str = typer.Option("int8", "--save-dtype", help="int8, int4, float16 or float32 for the model's weights."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip bad records instead of stopping."),
) -> None:
    """Give a model a neighbour memory of labelled videos: their labels vote in its scores, no retraining."""
    from vtag.memory import remember

    if dim < 1:
        raise VtagError(f"--dim must be >= 1, got {dim}")
    folder = remember(records, out, model=model, dim=dim, bits=bits, save_dtype=save_dtype, skip_bad=skip_bad, k=k,
                      temperature=temperature, weight=weight, epsilon=epsilon,
                      audio_weight=audio_weight)
    from vtag.models import load_model

    net, _ = load_model(folder)
    console.print(f"wrote {folder}: {net.config.name} with a memory of {net.config.memory['videos']:,} videos", highlight=False)


@app.command("ensemble")
def ensemble_command(
    models: list[str] = typer.Argument(..., help="Two or more trained model folders (or run names) of one architecture."),
    out: str = typer.Option(..., "--out", help="Folder for the ensemble."),
    save_dtype: str = typer.Option("float32", "--save-dtype", help="float32, float16, int8 or int4 for the weights."),
) -> None:
    """Average the logits of several trained models of one architecture, as one model."""
    from vtag.models import ensemble_folder

    folder, size = ensemble_folder(models, out, save_dtype)
    console.print(f"wrote {folder}: an ensemble of {size} models", highlight=False)


# ---- weights and feature extraction: weights, extract ---------------------------------------------

weights_app = typer.Typer(
    help="Official feature-extractor weight files: list them, download them, or import local copies.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(weights_app, name="weights")


@weights_app.callback()
def weights_list(ctx: typer.Context) -> None:
    """List the weight files, whether each is present and verified, and where the cache is."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from vtag.weights import CACHE_ENV, cache_dir, status

    table = Table(title=f"weight cache: {cache_dir()}  (set ${CACHE_ENV} to move it)", title_justify="left")
    table.add_column("file", no_wrap=True)
    table.add_column("present", no_wrap=True)
    table.add_column("verified", no_wrap=True)
    table.add_column("path", overflow="fold")
    for row in status():
        verified = "[green]yes[/]" if row.verified else ("[red]no[/]" if row.present else "-")
        present = "yes" if row.present else ("[yellow]partial[/]" if row.detail else "[red]no[/]")
        path = f"{row.path}" + (f"  [dim]({row.detail})[/]" if row.detail else "")
        table.add_row(row.name, present, verified, path)
    console.print(table)
    console.print("fetch missing files: [bold]vtag weights pull[/]  |  install local copies: "
                  "[bold]vtag weights import FILE...[/]")


@weights_app.command("pull")
def weights_pull(
    names: list[str] = typer.Argument(None, help="Weight files to fetch (default: all of them)."),
    base_url: str = typer.Option(None, "--base-url", help="A mirror serving the same file names."),
) -> None:
    """Download weight files from their official URLs, check their sha256, install them in the cache."""
    from vtag.weights import pull

    for path in pull(names or None, base_url_override=base_url):
        console.print(f"[green]ok[/] {path}")


@weights_app.command("import")
def weights_import(
    files: list[Path] = typer.Argument(..., help="Local copies of weight files (or yt8m_pca members)."),
) -> None:
    """Check local copies of weight files (by name and sha256) and install them in the cache."""
    from vtag.weights import import_files

    for path in import_files(files):
        console.print(f"[green]installed[/] {path}")


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

    from vtag.extract import FeatureExtractor, extract_to_records

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
) -> None:
    """Tag videos, audio files or YT8M record files with the top labels of a fusion model."""
    import json

    from rich.table import Table

    from vtag.classify import classify_paths, kaggle_rows
    from vtag.fileio import atomic_write_text

    fmt = "json" if as_json else fmt
    if fmt not in ("table", "json", "kaggle"):
        raise VtagError(f"--format {fmt}: use table, json or kaggle")
    if fmt == "kaggle" and output is None:
        raise VtagError("--format kaggle writes a CSV file: add -o FILE.csv")
    if random_weights:
        _warn_random_weights()
    predictions = classify_paths(inputs, model=model, top_k=top_k, device=device, random_weights=random_weights, skip_bad=skip_bad)
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
) -> None:
    """Tag every video or audio file in folders; resumable. Exit code 1 when some files failed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from vtag.batch import EXIT_SOME_FAILED, run_batch

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
                            max_frames=max_frames, on_file=on_file, on_start=on_start)
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


def main() -> None:
    # Typer turns Ctrl-C inside a command into exit code 130 itself (commands that must save work,
    # like batch and train, catch it first); this catches one that lands outside a command.
    try:
        app(prog_name="vtag")
    except VtagError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(EXIT_INTERRUPTED)
