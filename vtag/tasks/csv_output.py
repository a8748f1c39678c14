"""CSV cells as vtag writes them (batch results, `vtag classify --format kaggle`).

Quoting is the csv module's, with one gap closed: its minimal quoting leaves a bare "\\r" unquoted
when the line ends in "\\n", and a reader then splits the record there; a row holding one is quoted
whole.
"""

from __future__ import annotations

import csv
import io


def csv_line(values: list) -> str:
    """One CSV record ending in "\\n", every cell quoted as needed."""
    quoting = csv.QUOTE_ALL if any(isinstance(v, str) and "\r" in v for v in values) else csv.QUOTE_MINIMAL
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n", quoting=quoting).writerow(values)
    return buffer.getvalue()
