"""`vtag export`: a model or an extractor as an ONNX graph (vtag/models/export.py)."""

from __future__ import annotations

import typer

from vtag.cli.app import app, console, err_console
from vtag.errors import VtagError


def _frame_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise VtagError(f"--frame-size {text}: give HEIGHTxWIDTH, e.g. 360x640") from None
    return height, width


@app.command("export")
def export_command(
    model: str = typer.Argument(None, help="Model folder, trained registry name, untrained registry name (exported "
                                "freshly initialised), inception, vggish; default: the shipped model."),
    output: str = typer.Option(..., "--output", "-o", help="Folder for model.onnx, export.json and the vocabulary."),
    fmt: str = typer.Option("onnx", "--format", help="onnx (the only format)."),
    int8: bool = typer.Option(False, "--int8", help="Weight matrices at int8 (onnxruntime dynamic quantization)."),
    int4: bool = typer.Option(False, "--int4", help="Weight matrices at 4 bits (onnxruntime MatMulNBits; the shipped model's own 4-bit weights)."),
    frame_size: str = typer.Option("360x640", "--frame-size", help="inception: the fixed HEIGHTxWIDTH of its uint8 frames."),
    random_weights: bool = typer.Option(False, "--random-weights", help="inception/vggish: randomly initialised (tests only)."),
    hidden: int = typer.Option(None, "--hidden", help="Untrained registry model: hidden width."),
    attention_dim: int = typer.Option(None, "--attention-dim", help="Untrained registry model: attention dimension."),
    num_heads: int = typer.Option(None, "--num-heads", help="Untrained registry model: attention heads."),
) -> None:
    """Export a fusion model (ensemble and neighbour memory included) or an extractor as ONNX."""
    from vtag.models.export import export

    result = export(model, output, fmt=fmt, int8=int8, int4=int4, random_weights=random_weights,
                    frame_size=_frame_size(frame_size), hidden=hidden, attention_dim=attention_dim, num_heads=num_heads)
    if result.note:
        err_console.print(f"[bold yellow]note:[/] {result.note}", highlight=False)
    console.print(f"wrote {result.directory}: {result.name} ({result.kind}, {result.weights}), "
                  f"model.onnx {result.graph_bytes / 1e6:.1f} MB", highlight=False)
