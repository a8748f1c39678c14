"""Pictures: a video's tag timeline and a training run's curves, with matplotlib (the optional
`vtag[plot]` extra).

Figures are made with matplotlib's object API on the Agg canvas (no pyplot, no global state, no
display needed) and written atomically; the file's suffix picks PNG or SVG.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from vtag.errors import VtagError

PLOT_EXTRA = "pip install 'vtag[plot]'"
FORMATS = {".png": "png", ".svg": "svg"}


def require_matplotlib(flag: str = "--plot"):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise VtagError(f"{flag} draws with matplotlib, which is not installed: {PLOT_EXTRA}") from None


def check_output(path: str | Path, flag: str = "--plot") -> Path:
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise VtagError(f"{flag} {path}: give a .png or .svg file name")
    if not path.parent.is_dir():
        raise VtagError(f"{flag} {path}: folder {path.parent} does not exist")
    return path


def _save(figure, path: Path, dpi: int) -> Path:
    from vtag.io.atomic import atomic_write_bytes

    buffer = io.BytesIO()
    figure.savefig(buffer, format=FORMATS[path.suffix.lower()], dpi=dpi)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plot_timeline(prediction, output: str | Path, dpi: int = 100) -> Path:
    """The video's top tags (its whole-video labels) as rows, segments along the time axis, each
    cell coloured by that tag's score in that segment; above, a strip of keyframe thumbnails at their
    times. Needs a Prediction with `segments` (from --segments)."""
    require_matplotlib()
    output = check_output(output)
    segments = prediction.segments
    if not segments:
        raise VtagError(f"{prediction.path or prediction.source}: no segments to plot (classify with --segments)")
    tags = prediction.labels
    edges = np.array([segments[0].start] + [s.end for s in segments])
    grid = np.array([[s.scores[label.id] for s in segments] for label in tags])
    thumbs = prediction.thumbnails
    duration = float(edges[-1])

    figure = _figure(10, 1.6 + 0.38 * len(tags) + (1.3 if thumbs else 0))
    if thumbs:
        strip, heat = figure.subplots(2, 1, sharex=True, height_ratios=[1.3, 0.38 * len(tags) + 0.6])
        # evenly spaced frames in even slots along the time axis (their times label the slots)
        slot = duration / len(thumbs)
        for i, (time_s, rgb) in enumerate(thumbs):
            strip.imshow(rgb, extent=(i * slot, (i + 0.96) * slot, 0, 1), aspect="auto", interpolation="bilinear")
            strip.text((i + 0.48) * slot, -0.02, f"{time_s:.0f} s", ha="center", va="top", fontsize=7)
        strip.set_ylim(0, 1)
        strip.set_yticks([])
        strip.set_title("keyframes", loc="left", fontsize=9)
        for side in ("top", "right", "left"):
            strip.spines[side].set_visible(False)
    else:
        heat = figure.subplots(1, 1)
    # the colour scale runs to the highest score shown, so where a tag holds stands out even when
    # every score is small
    top = float(grid.max()) if grid.size and grid.max() > 0 else 1.0
    mesh = heat.pcolormesh(edges, np.arange(len(tags) + 1), grid, cmap="viridis", vmin=0.0, vmax=top)
    heat.set_yticks(np.arange(len(tags)) + 0.5, [label.name for label in tags])
    heat.invert_yaxis()  # the top tag on top
    heat.set_xlim(0, duration)
    heat.set_xlabel("time (s)")
    colorbar = figure.colorbar(mesh, ax=heat, pad=0.01)
    colorbar.set_label("score")
    title = f"{Path(prediction.path).name if prediction.path else prediction.source}: {len(segments)} segments"
    if prediction.random_weights:
        title += " (random weights: NOT meaningful)"
    figure.suptitle(title, fontsize=10)
    return _save(figure, output, dpi)


def plot_curves(history: list[dict], output: str | Path, title: str = "", dpi: int = 100) -> Path:
    """Training loss and validation GAP per epoch (from metrics.csv rows or a run's history)."""
    require_matplotlib()
    output = check_output(output)
    if not history:
        raise VtagError(f"{title or output}: no finished epochs to plot")
    epochs = [int(row["epoch"]) for row in history]
    loss = [float(row["loss"]) for row in history]
    gap = [(int(row["epoch"]), float(row["valid_gap"])) for row in history if row.get("valid_gap") not in (None, "")]
    figure = _figure(9, 3.4)
    left, right = figure.subplots(1, 2)
    left.plot(epochs, loss, marker="o", color="tab:blue")
    left.set_xlabel("epoch")
    left.set_ylabel("training loss (BCE)")
    left.grid(alpha=0.3)
    if gap:
        right.plot([e for e, _ in gap], [g for _, g in gap], marker="o", color="tab:green")
        right.set_ylabel("validation GAP@20")
        right.grid(alpha=0.3)
    else:
        right.text(0.5, 0.5, "no validation set (--valid)", ha="center", va="center", transform=right.transAxes)
        right.set_yticks([])
    right.set_xlabel("epoch")
    for axes in (left, right):
        axes.xaxis.get_major_locator().set_params(integer=True)
    if title:
        figure.suptitle(title, fontsize=10)
    return _save(figure, output, dpi)
