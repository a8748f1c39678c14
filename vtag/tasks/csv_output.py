"""CSV cells as vtag writes them (batch results, `vtag classify --format kaggle`).

Quoting is the csv module's, with one gap closed: its minimal quoting leaves a bare "\\r" unquoted
when the line ends in "\\n", and a reader then splits the record there; a row holding one is quoted
whole. A cell a spreadsheet would run as a formula (one starting with `=`, `+`, `-`, `@`, a tab or a
carriage return) gets a leading `'`, as OWASP advises against CSV injection; a cell that already
starts with `'` gets one too, so `unneutralise` gives back exactly the cell that was meant.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def neutralise(cell: object) -> object:
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS):
        return "'" + cell
    return cell


def unneutralise(cell: str) -> str:
    """The cell `neutralise` was given."""
    return cell[1:] if cell.startswith("'") else cell


def csv_line(values: list) -> str:
    """One CSV record ending in "\\n", every cell quoted as needed and neutralised."""
    cells = [neutralise(v) for v in values]
    quoting = csv.QUOTE_ALL if any(isinstance(c, str) and "\r" in c for c in cells) else csv.QUOTE_MINIMAL
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n", quoting=quoting).writerow(cells)
    return buffer.getvalue()


def kaggle_lines(rows: Iterable[tuple[str, str]]) -> Iterator[str]:
    """Google's YT8M submission CSV: the header, then `VideoId,LabelConfidencePairs` per video."""
    yield csv_line(["VideoId", "LabelConfidencePairs"])
    for video_id, pairs in rows:
        yield csv_line([video_id, pairs])
