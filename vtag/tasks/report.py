"""The batch report: one self-contained HTML page from a `vtag batch` results file.

The page needs no server and no network (its Content-Security-Policy forbids any fetch): the results
are embedded as one JSON array in a `<script type="application/json">` block, and the page's script
renders cards from it in batches as they scroll into view, so a folder of thousands of videos opens
fast. Everything from the results (file names, tag names, errors) reaches the page as JSON data and
is put into the document with `textContent`, never as HTML; the JSON block has every `<`, `>` and `&`
escaped, so no file name can close the block or inject markup.

Thumbnails live in the results file itself: with `--report` (or `--thumbnails`) `vtag batch` adds a
`thumbnail` field to each JSONL line, a ~160 px wide JPEG as a `data:image/jpeg;base64,` URI (a
few KB). CSV results have no room for one: their cards show no picture. Only such data: URIs are
accepted; anything else in the field is dropped.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections import Counter
from pathlib import Path

from vtag.errors import VtagError

_CSV_LABEL = re.compile(r"^(?P<name>.*) \((?P<id>\d+)\)=(?P<score>[-+0-9.eE]+|nan|inf)$")


def _label(raw: dict) -> dict:
    return {"id": int(raw.get("id", -1)), "name": str(raw.get("name", "")), "score": float(raw.get("score", 0.0)),
            "vertical": raw.get("vertical") or None}


def _entry(path: str, labels: list[dict], error: str | None, extra: dict | None = None) -> dict:
    from vtag.features.thumbnails import is_thumbnail_uri

    extra = extra or {}
    thumbnail = extra.get("thumbnail")
    return {
        "path": path,
        "name": Path(path).name or path,
        "error": error,
        "labels": labels,
        "thumbnail": thumbnail if is_thumbnail_uri(thumbnail) else None,
        "missing": [str(m) for m in extra.get("missing") or []],
        "segments": len(extra.get("segments") or []),
    }


def read_results(path: str | Path) -> tuple[list[dict], dict]:
    """Entries of a JSONL or CSV results file (as `vtag batch` writes them) and facts about the run:
    {"models": [...], "random_weights": bool}. A torn last line (a batch killed mid-write) is skipped."""
    path = Path(path)
    if not path.is_file():
        raise VtagError(f"{path}: no such results file")
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    entries, models, random_weights = [], Counter(), False
    if suffix in (".jsonl", ".json", ".ndjson"):
        # split on "\n" only: str.splitlines would also cut at U+2028 or \x1c, which JSON leaves raw
        for number, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                labels = [_label(label) for label in raw.get("labels") or []]
                entries.append(_entry(str(raw["path"]), labels, raw.get("error"), raw))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
                raise VtagError(f"{path}: line {number} is not a vtag results line (from `vtag batch -o FILE.jsonl`)") from None
            if raw.get("model"):
                models[str(raw["model"])] += 1
            random_weights |= bool(raw.get("random_weights"))
    elif suffix == ".csv":
        vocabulary = _vocabulary_2018()
        for number, row in enumerate(csv.reader(io.StringIO(text, newline="")), 1):
            if number == 1 and row == ["path", "labels", "error"]:
                continue
            if len(row) != 3:
                raise VtagError(f"{path}: line {number} is not a vtag results row (path,labels,error)")
            labels = []
            for part in filter(None, row[1].split("; ")):
                match = _CSV_LABEL.match(part)
                if match is None:
                    raise VtagError(f"{path}: line {number}: cannot read label {part!r}")
                index = int(match["id"])
                vertical = vocabulary.vertical(index) if vocabulary and index < len(vocabulary) else None
                labels.append({"id": index, "name": match["name"], "score": float(match["score"]),
                               "vertical": vertical or None})
            entries.append(_entry(row[0], labels, row[2] or None))
    else:
        raise VtagError(f"{path}: give a .jsonl or .csv results file from `vtag batch`")
    return entries, {"models": sorted(models), "random_weights": random_weights}


def _vocabulary_2018():
    try:
        from vtag.io.vocab import load_vocabulary

        return load_vocabulary("2018")
    except VtagError:  # verticals are a nicety: a report without them is still a report
        return None


def script_json(value) -> str:
    """JSON safe inside a <script> element: no `</script>`, `<!--` or `&` can appear in it."""
    text = json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_report(entries: list[dict], facts: dict | None = None, title: str = "vtag report") -> str:
    from vtag.tasks.report_page import PAGE

    facts = facts or {}
    for entry in entries:  # non-finite scores cannot go into JSON; they mean nothing to a reader either
        for label in entry["labels"]:
            if label["score"] != label["score"] or label["score"] in (float("inf"), float("-inf")):
                label["score"] = 0.0
    tag_counts = Counter(label["name"] for entry in entries for label in entry["labels"])
    payload = {
        "title": title,
        "results": entries,
        "tags": [[name, count] for name, count in tag_counts.most_common()],
        "models": facts.get("models", []),
        "random_weights": bool(facts.get("random_weights")),
    }
    head, tail = PAGE.split("@DATA@")  # title first, data second: neither can smuggle the other's marker in
    return head.replace("@TITLE@", html.escape(title)) + script_json(payload) + tail


def write_report(results: str | Path, output: str | Path | None = None, title: str | None = None) -> tuple[Path, int]:
    """Build the HTML report of a results file; returns (page path, cards)."""
    from vtag.io.atomic import atomic_write_text

    results = Path(results)
    output = Path(output) if output is not None else results.with_suffix(".html")
    if output.suffix.lower() not in (".html", ".htm"):
        raise VtagError(f"{output}: the report is an HTML page: give a .html file name")
    if output.resolve() == results.resolve():
        raise VtagError(f"{output}: would overwrite the results file; give another name")
    entries, facts = read_results(results)
    atomic_write_text(output, render_report(entries, facts, title or f"vtag report: {results.name}"))
    return output, len(entries)
