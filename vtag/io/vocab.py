"""YouTube-8M vocabularies: 2017 (4,716 classes, the Attend-Fusion paper's) and 2018 (3,862).

The shipped files live in `weights/`: `vocabulary_2018.csv` (the release's vocabulary.csv: Index,
TrainVideoCount, KnowledgeGraphId, Name, WikiUrl, Vertical1-3; its WikiDescription column, 3.2 MB
that nothing here reads, is left out to keep weights/ under 64 MB) and
`label_names_2017.csv` (label_id,label_name). Either format is accepted from any path.
"""

from __future__ import annotations

import csv
import functools
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vtag.io.paths import REPO_WEIGHTS_DIR
from vtag.errors import VtagError

WEIGHTS_DIR = REPO_WEIGHTS_DIR
VOCAB_FILES = {"2017": "label_names_2017.csv", "2018": "vocabulary_2018.csv"}
VOCAB_SIZES = {"2017": 4716, "2018": 3862}


@dataclass(frozen=True)
class Vocabulary:
    """Class names by label index. `source` is "2017", "2018" or the file's stem; `kg_ids` are Knowledge
    Graph ids ("/m/..."; empty where the file has none, as in 2017); `verticals` the categories of each
    class (2018 only)."""

    source: str
    names: tuple[str, ...]
    kg_ids: tuple[str, ...]
    verticals: tuple[tuple[str, ...], ...]

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> str:
        return self.names[index]

    def __repr__(self) -> str:
        return f"Vocabulary({self.source!r}, {len(self)} classes)"

    def name(self, index: int) -> str:
        """Display name of a label index (the KG id where the release gives no name)."""
        if not 0 <= index < len(self.names):
            raise VtagError(f"label {index} is outside the {self.source} vocabulary (0..{len(self.names) - 1})")
        return self.names[index]

    def index(self, name: str) -> int:
        """Label index of a class name (case-insensitive) or Knowledge Graph id."""
        key = name.strip().casefold()
        found = self._lookup.get(key)
        if found is None:
            hint = self.search(name)[:3]
            also = f"; did you mean {', '.join(repr(self.names[i]) for i in hint)}?" if hint else ""
            raise VtagError(f"no class named {name!r} in the {self.source} vocabulary{also}")
        return found

    def search(self, query: str) -> list[int]:
        """Indices of classes whose name, KG id or vertical contains `query` (case-insensitive); an
        integer query also matches that index. Exact name matches come first."""
        q = query.strip().casefold()
        if not q:
            return list(range(len(self)))
        exact, partial = [], []
        for i, (name, kg, verticals) in enumerate(zip(self.names, self.kg_ids, self.verticals)):
            if name.casefold() == q or kg.casefold() == q or str(i) == q:
                exact.append(i)
            elif q in name.casefold() or q in kg.casefold() or any(q in v.casefold() for v in verticals):
                partial.append(i)
        return exact + partial

    def vertical(self, index: int) -> str:
        return self.verticals[index][0] if self.verticals[index] else ""

    @functools.cached_property
    def _lookup(self) -> dict[str, int]:
        table: dict[str, int] = {}
        for i, (name, kg) in enumerate(zip(self.names, self.kg_ids)):
            table.setdefault(name.casefold(), i)
            if kg:
                table.setdefault(kg.casefold(), i)
        return table


def _read_rows(path: Path) -> list[list[str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.reader(f))
    except OSError as exc:
        raise VtagError(f"{path}: cannot read vocabulary ({exc.strerror or exc})") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise VtagError(f"{path}: not a UTF-8 CSV vocabulary ({exc})") from exc


def _parse(path: Path, name: str) -> Vocabulary:
    rows = _read_rows(path)
    if not rows:
        raise VtagError(f"{path}: empty vocabulary file")
    header = [h.strip() for h in rows[0]]
    entries: dict[int, tuple[str, str, tuple[str, ...]]] = {}
    if "Index" in header and "Name" in header:
        col = {h: i for i, h in enumerate(header)}
        kg_col = col.get("KnowledgeGraphId")
        vertical_cols = [col[h] for h in ("Vertical1", "Vertical2", "Vertical3") if h in col]
        for line, row in enumerate(rows[1:], start=2):
            if not row:
                continue
            try:
                index = int(row[col["Index"]])
                kg = row[kg_col].strip() if kg_col is not None else ""
                label = row[col["Name"]].strip() or kg  # 56 classes of the 2018 release have no name
                verticals = tuple(v for v in (row[c].strip() for c in vertical_cols) if v and v != "(Unknown)")
            except (ValueError, IndexError):
                raise VtagError(f"{path}: line {line} is not a vocabulary row") from None
            entries[index] = (label, kg, verticals)
    elif len(header) >= 2 and header[0] == "label_id":
        for line, row in enumerate(rows[1:], start=2):
            if not row:
                continue
            try:
                index = int(row[0])
            except ValueError:
                raise VtagError(f"{path}: line {line} does not start with a label id") from None
            # some release files leave commas inside names unquoted: the name is everything after the id
            entries[index] = (",".join(row[1:]).strip(), "", ())
    else:
        raise VtagError(f"{path}: unknown vocabulary format; expected a header 'Index,...,Name,...' "
                        "(vocabulary.csv) or 'label_id,label_name'")
    if sorted(entries) != list(range(len(entries))):
        missing = sorted(set(range(len(entries))) - set(entries))[:5]
        raise VtagError(f"{path}: label indices must run 0..{len(entries) - 1} without gaps "
                        f"(missing {missing})")
    ordered = [entries[i] for i in range(len(entries))]
    return Vocabulary(
        source=name,
        names=tuple(e[0] for e in ordered),
        kg_ids=tuple(e[1] for e in ordered),
        verticals=tuple(e[2] for e in ordered),
    )


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, name: str) -> Vocabulary:
    return _parse(Path(path), name)


def load_vocabulary(which: str | os.PathLike = "2018") -> Vocabulary:
    """"2017", "2018" (the shipped files) or a path to a vocabulary CSV."""
    key = os.fspath(which)
    if key in VOCAB_FILES:
        path = WEIGHTS_DIR / VOCAB_FILES[key]
        if not path.is_file():
            raise VtagError(f"{path}: shipped vocabulary file missing; reinstall vtag")
        vocab = _load_cached(str(path), key)
        if len(vocab) != VOCAB_SIZES[key]:
            raise VtagError(f"{path}: has {len(vocab)} classes, the {key} vocabulary has {VOCAB_SIZES[key]}")
        return vocab
    path = Path(key).expanduser()
    if not path.is_file():
        raise VtagError(f"vocabulary {key!r}: not '2017', '2018' or an existing CSV file")
    return _load_cached(str(path.resolve()), path.stem)


def vocabulary_for(schemas: Iterable[str], max_label: int | None) -> str:
    """The vocabulary a record set uses: 2017 if any record has the 2017 key `video_id` or a label
    beyond the 2018 vocabulary; else 2018."""
    if "2017" in set(schemas):
        return "2017"
    if max_label is not None and max_label >= VOCAB_SIZES["2018"]:
        if max_label >= VOCAB_SIZES["2017"]:
            raise VtagError(f"label {max_label} is outside both YT8M vocabularies; pass --vocab PATH")
        return "2017"
    return "2018"


def detect_vocabulary(paths: str | os.PathLike | Sequence[str | os.PathLike], skip_bad: bool = False) -> str:
    """Scan the labels and id keys of record files (no features are decoded) and name their
    vocabulary: "2017" or "2018"."""
    from vtag.io.inspect import scan_labels

    schemas, max_label = scan_labels(paths, skip_bad=skip_bad)
    return vocabulary_for(schemas, max_label)
