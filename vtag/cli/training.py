"""`vtag train`, `vtag eval`, `vtag memory`, `vtag ensemble`."""

from __future__ import annotations

import sys

import typer

from vtag.cli.app import app, console
from vtag.errors import VtagError


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
    size: str = typer.Option("compact", "--size", help="Model widths: compact (hidden 1024, attention dim 512; attend-fusion 21.7M parameters) or paper (the paper's: FC 8000, attention models 2048/1024; attend-fusion 68.6M, 3x the disk and time)."),
    hidden: int = typer.Option(None, "--hidden", help="Override the model's hidden width (over --size)."),
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
    keep_optimizer: bool = typer.Option(False, "--keep-optimizer", help="Keep the optimizer state in --out/last when the run finishes (about twice the model's size), so --resume --epochs N can extend it; by default only an unfinished run keeps it."),
    plot: bool = typer.Option(False, "--plot", help="Draw loss and validation GAP per epoch to --out/curves.png (needs vtag[plot])."),
) -> None:
    """Train a model on YT8M records (AdamW + BCE); models in --out/best and --out/last (last/ also holds
    the optimizer state until the run finishes, for --resume); per-epoch metrics in --out/metrics.csv
    and TensorBoard event files. The recipe's defaults are the paper's, the model's size is compact
    unless --size paper."""
    from vtag.tasks.train import TrainConfig, train as run_training

    if plot:
        from vtag.tasks.plots import require_matplotlib

        require_matplotlib()  # before training, not after an hour of it

    overrides = {k: v for k, v in (("hidden", hidden), ("attention_dim", attention_dim), ("num_heads", num_heads),
                                                 ("input_norm", input_norm), ("experts", experts)) if v is not None}
    config = TrainConfig(train=train, valid=valid, model=model, epochs=epochs, lr=lr, dropout=dropout,
                         batch_size=batch_size, weight_decay=weight_decay, out=out, resume=resume, device=device,
                         input_spec=input_spec, vocab=vocab, workers=workers, seed=seed, model_overrides=overrides,
                         schedule=schedule, warmup_epochs=warmup_epochs, ema=ema, bias_init=bias_init,
                         input_dropout=input_dropout, mixup=mixup, stream=stream,
                         save_dtype=save_dtype, skip_bad=skip_bad, size=size, keep_optimizer=keep_optimizer)
    result = run_training(config, progress=sys.stderr.isatty(), log=lambda line: console.print(line, highlight=False))
    best = f", best valid GAP {result.best_gap:.4f} in {result.out / 'best'}" if result.best_gap is not None else ""
    kept = "last checkpoint" if keep_optimizer else "last model"
    console.print(f"done: {result.epochs_done} epochs, {kept} in {result.out / 'last'}{best}", highlight=False)
    if plot:
        from vtag.tasks.training_log import write_curves

        console.print(f"curves: {write_curves(result.out)}", highlight=False)


@app.command("eval")
def eval_command(
    records: list[str] = typer.Argument(..., help="Labelled record files, folders or quoted globs; - reads paths from stdin."),
    model: str = typer.Option(None, "--model", help="Model folder, or a registry name trained into runs/NAME (default: shipped model)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object (a JSON Lines line; docs/JSON.md) instead of a table."),
    threshold: float = typer.Option(0.5, "--threshold", help="Score threshold for F1."),
    batch_size: int = typer.Option(1024, "--batch-size", help="Videos per forward pass."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip bad records instead of stopping."),
    runtime: str = typer.Option("torch", "--runtime", help="torch, or onnx: the fusion model in onnxruntime (pip install 'vtag[onnx]')."),
    vocab: str = typer.Option(None, "--vocab", help="2017 or 2018: must match the records' (detected); with no --model, picks the shipped model of it."),
) -> None:
    """Score a model on labelled records: GAP@20, Hit@1, PERR, mAP, F1 (Google's eval_util semantics)."""
    from rich.table import Table

    from vtag.tasks.evaluate import evaluate
    from vtag.tasks.metrics import F1_MACRO_AVERAGING

    from vtag.cli.inputs import refuse_media, with_stdin
    from vtag.cli.meta import check_model_name

    from vtag.cli.progress import scoring_progress

    check_model_name(model)
    with scoring_progress("evaluating") as on_scored:
        result = evaluate(refuse_media(with_stdin(records)), model=model, batch_size=batch_size, device=device,
                          threshold=threshold, skip_bad=skip_bad, runtime=runtime, on_scored=on_scored,
                          vocabulary=vocab)
    from vtag.cli.app import note as verbose_note

    verbose_note(f"model {result['model_name']} from {result['model']}, runtime {result['runtime']}")
    if as_json:
        from vtag.cli.output import json_line

        keys = ("model_name", "model", "runtime", "gap", "hit_at_1", "perr", "map", "f1_micro", "f1_macro",
                "threshold", "videos")
        typer.echo(json_line({k: result[k] for k in keys}, "vtag eval"))
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
    from vtag.tasks.remember import remember

    if dim < 1:
        raise VtagError(f"--dim must be >= 1, got {dim}")
    folder = remember(records, out, model=model, dim=dim, bits=bits, save_dtype=save_dtype, skip_bad=skip_bad, k=k,
                      temperature=temperature, weight=weight, epsilon=epsilon,
                      audio_weight=audio_weight)
    from vtag.models.storage import load_model

    net, _ = load_model(folder)
    console.print(f"wrote {folder}: {net.config.name} with a memory of {net.config.memory['videos']:,} videos", highlight=False)


@app.command("ensemble")
def ensemble_command(
    models: list[str] = typer.Argument(..., help="Two or more trained model folders (or run names) of one architecture."),
    out: str = typer.Option(..., "--out", help="Folder for the ensemble."),
    save_dtype: str = typer.Option("float32", "--save-dtype", help="float32, float16, int8 or int4 for the weights."),
) -> None:
    """Average the logits of several trained models of one architecture, as one model."""
    from vtag.models.ensemble import ensemble_folder

    folder, size = ensemble_folder(models, out, save_dtype)
    console.print(f"wrote {folder}: an ensemble of {size} models", highlight=False)
