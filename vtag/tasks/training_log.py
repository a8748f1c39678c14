"""A training run's per-epoch metrics on disk.

After each epoch `vtag train` rewrites RUN_DIR/metrics.csv (atomically, from the whole history, which
a resumed run restores from its checkpoint, so the file never loses or repeats an epoch) and appends
the epoch's scalars to a TensorBoard event file in RUN_DIR (`tensorboard --logdir runs` shows every
run by its folder name). `read_history` reads metrics.csv back for `vtag report RUN_DIR`.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from vtag.errors import VtagError

METRICS_FILE = "metrics.csv"
CURVES_FILE = "curves.png"
BASE_COLUMNS = ["epoch", "loss", "seconds", "examples_per_s"]


def flat_row(record: dict) -> dict:
    """One history record -> one CSV row: validation metrics become valid_<name> columns."""
    row = {key: record[key] for key in BASE_COLUMNS if key in record}
    for key, value in (record.get("valid") or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            row[f"valid_{key}"] = value
    return row


def metrics_csv(history: list[dict]) -> str:
    rows = [flat_row(record) for record in history]
    columns = list(BASE_COLUMNS)
    for row in rows:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


class TrainingLog:
    """Called once per finished epoch with the run's whole history."""

    def __init__(self, run_dir: str | Path):
        from vtag.io.tfevents import EventWriter

        self.run_dir = Path(run_dir)
        self.events = EventWriter(self.run_dir)

    def epoch_done(self, history: list[dict]) -> None:
        from vtag.io.atomic import atomic_write_text

        atomic_write_text(self.run_dir / METRICS_FILE, metrics_csv(history))
        last = flat_row(history[-1])
        scalars = {("train/" + key if not key.startswith("valid_") else "valid/" + key[len("valid_"):]): float(value)
                   for key, value in last.items() if key != "epoch"}
        self.events.scalars(int(last["epoch"]), scalars)


def read_history(run_dir: str | Path) -> list[dict]:
    """metrics.csv rows as dicts of floats (epoch as int)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise VtagError(f"{run_dir}: no {METRICS_FILE} (is it a `vtag train` run folder? runs before this "
                        "version wrote none)")
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for number, row in enumerate(csv.DictReader(f), 2):
            try:
                rows.append({key: (int(value) if key == "epoch" else float(value)) if value != "" else None
                             for key, value in row.items()})
            except (TypeError, ValueError):
                raise VtagError(f"{path}: line {number} is not a metrics row") from None
    return rows


def write_curves(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Draw RUN_DIR's loss and validation GAP per epoch (default RUN_DIR/curves.png)."""
    from vtag.tasks.plots import plot_curves

    run_dir = Path(run_dir)
    return plot_curves(read_history(run_dir), output or run_dir / CURVES_FILE, title=run_dir.name)
