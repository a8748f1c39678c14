"""The results file of `vtag batch`: append-only JSONL or CSV, the only state a resume reads.

Each finished file is one record, written with a single `os.write` and fsynced, so a kill leaves at
most a torn last record, which the next run cuts off. Records are split on "\\n" only (JSONL) or on a
"\\n" outside quotes (CSV): `str.splitlines` would also cut at "\\r", U+2028 or U+0085, which a file
name may hold and JSON leaves raw, and a resume would then misread the file. Files are recorded and
looked up by `result_key` (the folder's real path, the file's own name), so a resume that spells the
folder differently still finds its work.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vtag.errors import VtagError
from vtag.io.atomic import atomic_write_text
from vtag.tasks.csv_output import csv_line, unneutralise

if TYPE_CHECKING:
    from vtag.tasks.classify import Prediction

CSV_HEADER = ["path", "labels", "error"]


def result_key(path: str | os.PathLike) -> str:
    """The name a file is recorded and looked up under: its folder's real path joined with its own
    name, so `clips/a.mp4` and `/home/me/clips/a.mp4` (or a symlinked spelling of the folder) are one
    file. Only the folder is resolved: a symlinked file keeps the name the user gave it. URLs are kept
    as they are."""
    from vtag.io.remote import is_url

    text = os.fspath(path)
    if is_url(text):
        return text
    folder, name = os.path.split(os.path.abspath(text))
    return os.path.join(os.path.realpath(folder), name)


def printable(text: str) -> str:
    """`text` as valid UTF-8: a file name that is not UTF-8 reaches Python with lone surrogates
    (os.fsdecode), which no UTF-8 file can hold; they become backslash escapes (`\\udce9`)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def json_line(entry: dict) -> str:
    """One JSONL record. Lone surrogates (undecodable file names) are written as JSON \\u escapes, so
    the file stays UTF-8 and json.loads gives back the exact name the next run looks up."""
    try:
        text = json.dumps(entry, ensure_ascii=False, allow_nan=False)
    except ValueError:  # NaN or infinity: not JSON, and a reader would choke on the whole file
        raise VtagError(f"{printable(str(entry.get('path', '')))}: the result holds NaN or infinity "
                        "(a broken model or features): no tags written") from None
    if any("\ud800" <= c <= "\udfff" for c in text):
        text = "".join(f"\\u{ord(c):04x}" if "\ud800" <= c <= "\udfff" else c for c in text)
    return text + "\n"


def write_problem(path: Path, exc: OSError) -> VtagError:
    """A one-line error for a results file (or its lock) that cannot be written."""
    fixes = {errno.ENOSPC: "free some space or give -o a file on another disk",
             errno.EDQUOT: "free some space or give -o a file on another disk",
             errno.EROFS: "give -o a file on a writable disk",
             errno.EACCES: "give -o a file in a folder you can write to",
             errno.EPERM: "give -o a file in a folder you can write to",
             errno.ENOENT: "create the folder first"}
    reason = exc.strerror or str(exc)
    return VtagError(f"{path}: cannot write the results: {reason}: {fixes.get(exc.errno, 'check the disk')}")


@dataclass
class Entry:
    path: str  # as the record holds it
    key: str  # ResultsFile.key of it
    ok: bool
    text: str  # the whole record, as written, ending in "\n"
    error: str = ""


class ResultsFile:
    """Append-only JSONL or CSV results, read back for resuming."""

    CSV_HEADER = CSV_HEADER

    def __init__(self, path: str | Path):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix in (".jsonl", ".json", ".ndjson"):
            self.format = "jsonl"
        elif suffix == ".csv":
            self.format = "csv"
        else:
            raise VtagError(f"{self.path}: results must be a .jsonl or .csv file")

    def key(self, path: str | os.PathLike) -> str:
        """What `path` is found under in this file's records (prepare's sets hold these)."""
        key = result_key(path)
        return printable(key) if self.format == "csv" else key

    def _records(self) -> list[bytes]:
        """The complete records of the file; a torn last one (a kill mid-write) is cut off the file."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise VtagError(f"{self.path}: cannot read the results: {exc.strerror or exc}") from None
        records, start, piece, quotes = [], 0, 0, 0
        for end in _newlines(data):
            if self.format == "csv":
                # CSV doubles a quote inside a quoted cell, so a "\n" ends the record only where the
                # record so far holds an even number of quotes (counted in bytes: '"' and "\n" never
                # occur inside a UTF-8 sequence).
                quotes += data.count(b'"', piece, end)
                piece = end + 1
                if quotes % 2:
                    continue
            records.append(data[start:end + 1])
            start = piece = end + 1
            quotes = 0
        if start != len(data):
            try:
                with open(self.path, "r+b") as f:
                    f.truncate(start)
            except OSError as exc:
                raise write_problem(self.path, exc) from None
        return records

    def _entries(self) -> list[Entry]:
        entries = []
        for number, record in enumerate(self._records(), 1):
            try:
                text = record.decode("utf-8")
            except UnicodeDecodeError:
                raise VtagError(f"{self.path}: line {number} is not UTF-8 text: not a vtag results file?") from None
            if not text.strip():
                continue
            if self.format == "jsonl":
                try:
                    entry = json.loads(text)
                    path, error = entry["path"], entry.get("error")
                except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                    raise VtagError(f"{self.path}: line {number} is not a vtag results line: not a vtag results file?") from None
                entries.append(Entry(path, self.key(path), error is None, text, error or ""))
            else:
                row = next(csv.reader(io.StringIO(text, newline="")), [])
                if row == CSV_HEADER:
                    continue
                if len(row) != 3:
                    raise VtagError(f"{self.path}: line {number} is not a vtag results row (path,labels,error)")
                path, error = unneutralise(row[0]), unneutralise(row[2])
                entries.append(Entry(path, self.key(path), not error, text, error))
        return entries

    def prepare(self, retry_failed: bool, keys: set[str] | None = None) -> tuple[set[str], dict[str, str]]:
        """Returns the finished files of earlier runs and the failed ones with their errors (both by
        result_key). With retry_failed, the failed records of `keys` (all, when None) are removed
        (atomically) so the retry's record is the only one for that file; a finished record is never
        removed."""
        entries = self._entries()
        finished = {e.key for e in entries if e.ok}
        failed = {e.key: e.error for e in entries if not e.ok and e.key not in finished}
        if retry_failed:
            drop = {k for k in failed if keys is None or k in keys}
            if drop:
                keep = [e.text for e in entries if e.ok or e.key not in drop]
                self._rewrite(keep)
                failed = {k: v for k, v in failed.items() if k not in drop}
        if self.format == "csv" and not self.path.exists():
            self._rewrite([])
        return finished, failed

    def _rewrite(self, records: list[str]) -> None:
        header = [csv_line(CSV_HEADER)] if self.format == "csv" else []
        try:
            atomic_write_text(self.path, header + records)
        except OSError as exc:
            raise write_problem(self.path, exc) from None

    def append(self, line: str) -> None:
        data = line.encode("utf-8")
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                # One write call per line: appends of this size are not interleaved or split by a signal.
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError(errno.ENOSPC, f"short write ({written} of {len(data)} bytes)")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise write_problem(self.path, exc) from None


class OutputLock:
    """An exclusive lock on a results file for one `vtag batch` run: an flock on `.NAME.lock` beside it
    (the results file itself is replaced by rename on --retry-failed, so it cannot carry the lock), with
    the holder's pid in it for the message. The kernel drops an flock when its holder dies, however it
    dies, so a killed run never leaves the output locked. Without fcntl (Windows) there is no lock."""

    def __init__(self, results: Path):
        self.results = Path(results)
        self.path = self.results.with_name(f".{self.results.name}.lock")
        self.fd: int | None = None
        try:
            import fcntl
        except ImportError:
            return
        try:
            while self.fd is None:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = os.read(fd, 32).decode("ascii", "replace").strip()
                    os.close(fd)
                    who = f" (pid {holder})" if holder.isdigit() else ""
                    raise VtagError(f"{self.results} is being written by another vtag batch{who}: wait for it to "
                                    "finish, or give -o another file") from None
                # The last holder removes the file as it lets go: if it did so after we opened it, we
                # hold a lock on a file nobody else sees, so lock the one now on disk instead.
                try:
                    same = os.path.samestat(os.fstat(fd), os.stat(self.path))
                except FileNotFoundError:
                    same = False
                if same:
                    self.fd = fd
                    os.ftruncate(fd, 0)
                    os.write(fd, f"{os.getpid()}\n".encode())
                else:
                    os.close(fd)
        except OSError as exc:
            raise write_problem(self.results, exc) from None

    def release(self) -> None:
        if self.fd is not None:
            try:
                os.unlink(self.path)  # while still locked: a waiting run then finds the file gone
            except OSError:
                pass
            os.close(self.fd)
            self.fd = None


def prediction_line(prediction: Prediction | None, path: str, error: str | None, fmt: str) -> str:
    """One record of `vtag batch` for one file: JSONL or CSV, valid UTF-8 whatever the file's name.
    A result holding NaN or infinity raises VtagError (the caller records it as that file's failure)."""
    if fmt == "jsonl":
        if error is not None:
            return json_line({"path": path, "error": error})
        entry = {"path": path, **{k: v for k, v in prediction.to_json().items() if k not in ("source", "path")}}
        if prediction.thumbnails:  # the keyframe the HTML report shows, inline (a few KB)
            from vtag.features.thumbnails import keyframe_uri

            entry["thumbnail"] = keyframe_uri(prediction.thumbnails)
        return json_line(entry)
    # CSV has no escapes: an undecodable name is written (and looked up on resume) as printable() text
    if error is not None:
        return csv_line([printable(path), "", printable(error)])
    if not all(math.isfinite(label.score) for label in prediction.labels):  # "nan" is no score either
        raise VtagError(f"{printable(path)}: the result holds NaN or infinity (a broken model or features): "
                        "no tags written")
    labels = "; ".join(f"{label.name} ({label.id})={label.score:.4f}" for label in prediction.labels)
    return csv_line([printable(path), labels, ""])


def _newlines(data: bytes):
    at = data.find(b"\n")
    while at != -1:
        yield at
        at = data.find(b"\n", at + 1)
