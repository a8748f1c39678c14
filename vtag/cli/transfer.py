"""`vtag transfer`: a head for another vocabulary on a trained model's trunk."""

from __future__ import annotations

import typer

from vtag.cli.app import app, console


@app.command("transfer")
def transfer_command(
    train: list[str] = typer.Option(..., "--train", help="Labelled records of the target vocabulary: files, folders or quoted globs (repeatable)."),
    out: str = typer.Option(..., "--out", help="Folder for the head model; keep it beside the trunk's folder (it shares its tensors)."),
    vocab: str = typer.Option("2017", "--vocab", help="The head's vocabulary: 2017 or 2018."),
    model: str = typer.Option(None, "--model", help="The trunk: a model folder (default: the shipped 2018 model)."),
    valid: list[str] = typer.Option([], "--valid", help="Validation records (repeatable): GAP and Hit@1 printed each epoch."),
    epochs: int = typer.Option(10, "--epochs", help="Passes over the training videos (0: the name-matched rows untrained, a baseline)."),
    lr: float = typer.Option(3e-3, "--lr", help="Adam learning rate of the classifiers."),
    weight_decay: float = typer.Option(1e-3, "--weight-decay", help="Pull of each classifier row towards the row it started from (1e-3: chosen on the 2017 selection split)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the order of the videos."),
    save_dtype: str = typer.Option("int4", "--save-dtype", help="int4, int8, float16 or float32 for the head's weights."),
) -> None:
    """Fit a classifier for another vocabulary (2017's 4,716 classes) on a trained model's frozen trunk,
    starting from the rows of classes with the same name; the memory's labels are mapped too."""
    from vtag.tasks.transfer import transfer

    def show(entry: dict) -> None:
        scores = f"  valid GAP {entry['gap']:.4f}  Hit@1 {entry['hit_at_1']:.4f}" if "gap" in entry else ""
        console.print(f"epoch {entry['epoch']}: loss {entry['loss']:.4f}{scores}", highlight=False)

    result = transfer(model, vocab, train, out, valid=valid or None, epochs=epochs, lr=lr,
                      weight_decay=weight_decay, seed=seed, dtype=save_dtype, progress=show)
    how = f"trained on {result.train_videos:,} videos" if epochs else "untrained: the name-matched rows only"
    console.print(f"wrote {result.out}: a {vocab} head {how}", highlight=False)
