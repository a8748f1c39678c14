"""`vtag batch`: tag every video or audio file under some folders, resumably.

Decoding runs in worker processes (PyAV releases little of the GIL and a corrupt file can crash
FFmpeg, so a worker per file stream keeps both speed and isolation). Workers stream sampled frames in
small chunks and log-mel examples through a bounded queue, so memory does not grow with video length
or worker count; the main process runs the extractors and the fusion model in batches on one device.

The results file (vtag.tasks.results_file) is the only state: one record per finished file, fsynced.
On resume a torn tail (a kill mid-write) is cut off, finished files are skipped, failed ones are
retried only when asked, and their old error records are removed first, so no file is duplicated or
lost.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import stat
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vtag.tasks.classify import MEDIA_SUFFIXES, Tagger
from vtag.tasks.results_file import OutputLock, ResultsFile, prediction_line, result_key
from vtag.errors import VtagError

__all__ = ["BatchSummary", "ResultsFile", "find_media", "run_batch"]

FRAMES_PER_CHUNK = 16
THUMBNAILS_PER_FILE = 3  # the report shows the middle one; the worker sends these few small ones only
EXIT_SOME_FAILED = 1


@dataclass
class BatchSummary:
    total: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0  # finished in an earlier run
    failed_before: int = 0  # failed in an earlier run and not retried (counted in `failed` too)
    video_seconds: float = 0.0
    elapsed_s: float = 0.0
    interrupted: bool = False
    failures: list[tuple[str, str]] = field(default_factory=list)


def find_media(folders: Iterable[str | Path], recursive: bool = False,
               roots: dict[str, str] | None = None) -> list[Path | str]:
    """Media files under folders (sorted, without duplicates). URLs come back as str (vtag.io.remote).
    `roots`, when given, is filled with str(file) -> the folder (or URL prefix) it was found under,
    for `--shard`'s canonical names."""
    from vtag.io.remote import expand_url, is_url

    roots = {} if roots is None else roots
    found: list[Path | str] = []
    for raw in folders:
        if is_url(str(raw)):
            urls = expand_url(str(raw), MEDIA_SUFFIXES, recursive)
            found.extend(urls)
            prefix = str(raw).rstrip("/") + "/"
            roots.update((u, prefix) for u in urls if u != str(raw) and u.startswith(prefix))
            continue
        root = Path(raw)
        try:
            is_dir = stat.S_ISDIR(os.stat(root).st_mode)
        except FileNotFoundError:
            raise VtagError(f"{root}: no such folder") from None
        except OSError as exc:  # a symlink loop (ELOOP), no permission, ...
            raise VtagError(f"{root}: cannot open it: {exc.strerror or exc}") from None
        if not is_dir:
            found.append(root)
            continue
        before = len(found)
        if recursive:
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                found.extend(Path(dirpath, name) for name in filenames if Path(name).suffix.lower() in MEDIA_SUFFIXES)
        else:
            try:
                with os.scandir(root) as entries:
                    found.extend(Path(e.path) for e in entries
                                 if Path(e.name).suffix.lower() in MEDIA_SUFFIXES and _is_file_or_broken(e))
            except OSError as exc:
                raise VtagError(f"{root}: cannot list the folder: {exc.strerror or exc}") from None
        roots.update((str(p), str(root)) for p in found[before:])
    return sorted(set(found), key=str)


def _is_file_or_broken(entry: os.DirEntry) -> bool:
    """A file, or a media-named entry that cannot be looked at (a symlink loop): kept, so it is reported
    as failed with its reason rather than silently left out (as os.walk's listing keeps it too)."""
    try:
        return entry.is_file()
    except OSError:
        return True


# ---- decoding workers -----------------------------------------------------------------------------


def decode_messages(index: int, path: str, max_frames: int, thumbnails: int = 0):
    """The messages a worker sends for one file: chunks of frames preprocessed for Inception (float32
    [n, 3, 299, 299]), small thumbnails (when asked for),
    then log-mel examples, then done."""
    import torch

    from vtag.features import media
    from vtag.features.inception import preprocess_frames
    from vtag.features.thumbnails import ThumbnailKeeper
    from vtag.features.vggish import log_mel_examples
    from vtag.io.remote import is_url

    if not is_url(path):
        try:
            os.stat(path)
        except OSError as exc:  # e.g. a symlink loop, which the decoder would call "no such file"
            raise VtagError(f"{path}: cannot open it: {exc.strerror or exc}") from None
    info = media.probe(path)
    chunk: list[np.ndarray] = []
    if info.has_video:
        keeper = ThumbnailKeeper(thumbnails) if thumbnails else None
        for frame in media.sample_frames_timed(path, max_frames=max_frames):
            if keeper is not None:
                keeper.add(frame.time_s, frame.rgb)
            # Each frame is cut to the network's 299x299 input before it is kept: a chunk of full
            # frames of a 16000x16000 video would hold 12 GB; this holds 17 MB whatever the size.
            with torch.inference_mode():
                chunk.append(preprocess_frames(torch.from_numpy(frame.rgb)[None])[0].numpy())
            del frame
            if len(chunk) == FRAMES_PER_CHUNK:
                yield ("frames", index, np.stack(chunk))
                chunk = []
        if chunk:
            yield ("frames", index, np.stack(chunk))
        if keeper is not None:
            yield ("thumbnails", index, keeper.thumbnails())
    if info.has_audio:
        # Rows past max_frames seconds are cut anyway; bounded like FeatureExtractor.extract.
        waveform = media.read_audio(path, max_seconds=max_frames + 1)
        yield ("audio", index, log_mel_examples(waveform))
    yield ("done", index, (info.has_video, info.has_audio, info.duration_s))


def _safe_messages(index: int, path: str, max_frames: int, thumbnails: int = 0):
    try:
        yield from decode_messages(index, path, max_frames, thumbnails)
    except VtagError as exc:
        yield ("error", index, str(exc))
    except Exception as exc:  # a decoder bug must cost one file, not the batch
        yield ("error", index, f"{path}: {type(exc).__name__}: {exc}")


def _die_with_parent(parent: int) -> None:
    """Make this worker end when the batch process does, however it ends: a SIGKILLed parent runs no
    cleanup, and its workers (hundreds of MB each) would decode on, or wait on a full queue, forever."""
    watch = True
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            # PR_SET_PDEATHSIG (1): the kernel sends SIGKILL when the parent thread that started us dies
            watch = libc.prctl(1, signal.SIGKILL, 0, 0, 0) != 0
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # it died before the line above took effect
        os._exit(1)
    if watch:  # no prctl: look once a second instead
        import threading

        def check() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=check, daemon=True).start()


def _worker_main(tasks, results, max_frames: int, thumbnails: int = 0, parent: int | None = None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C means
    if parent is not None:
        _die_with_parent(parent)
    while (task := tasks.get()) is not None:
        index, path = task
        results.put(("start", index, os.getpid()))
        for message in _safe_messages(index, path, max_frames, thumbnails):
            results.put(message)


# ---- the batch ------------------------------------------------------------------------------------


class _Assembler:
    """Collects one file's frames and audio, runs the extractors on them, tags the result."""

    def __init__(self, tagger: Tagger, top_k: int, segments: float | None = None):
        self.tagger, self.top_k, self.segments = tagger, top_k, segments
        self.visual: dict[int, list[np.ndarray]] = {}
        self.audio: dict[int, np.ndarray] = {}
        self.thumbnails: dict[int, list] = {}

    def frames(self, index: int, inputs: np.ndarray) -> None:
        """`inputs`: a chunk of decode_messages' preprocessed frames."""
        self.visual.setdefault(index, []).append(self.tagger.extractor.preprocessed_features(inputs))

    def log_mel(self, index: int, examples: np.ndarray) -> None:
        self.audio[index] = self.tagger.extractor.audio_features(examples)

    def finish(self, index: int, path: str, has: tuple[bool, bool, float]):
        has_video, has_audio, duration = has
        chunks = self.visual.pop(index, [])
        visual = np.concatenate(chunks) if chunks else None
        audio = self.audio.pop(index, None)
        features = self.tagger.extractor.assemble(Path(path).stem, visual, audio, duration)
        prediction = self.tagger.classify_features(features, self.top_k, path, path)
        prediction.thumbnails = self.thumbnails.pop(index, [])
        from vtag.tasks.segments import add_segments

        return add_segments(prediction, self.tagger, features, self.segments, self.top_k), duration

    def drop(self, index: int) -> None:
        self.visual.pop(index, None)
        self.audio.pop(index, None)
        self.thumbnails.pop(index, None)


def run_batch(
    folders: Iterable[str | Path],
    output: str | Path,
    recursive: bool = False,
    workers: int = 2,
    model: str | Path | None = None,
    device: str = "auto",
    random_weights: bool = False,
    retry_failed: bool = False,
    top_k: int = 5,
    max_frames: int = 300,
    on_file: Callable[[str, str | None, BatchSummary], None] | None = None,
    on_start: Callable[[BatchSummary], None] | None = None,
    shard: str | None = None,
    results_from: Callable | None = None,
    segments: float | None = None,
    thumbnails: bool = False,
    runtime: str = "torch",
    vocabulary: str | None = None,
) -> BatchSummary:
    """Tag every media file under `folders` into `output`; returns counts. `on_file(path, error,
    summary)` is called after each file (for progress display). `shard` "I/N" tags only this job's
    share of the files (vtag.io.shard). `results_from(todo, tagger)`, when given, yields (index,
    prediction, error, seconds) per file in place of decoding here (vtag.tasks.distributed.batch_on_ray
    runs them on Ray); the results file, resume and counts stay this function's. `segments=S` adds
    labels per S-second window to each JSONL line; `thumbnails` adds a small keyframe JPEG (a data: URI,
    a few KB) to each JSONL line for `vtag report`. `vocabulary` (--vocab 2017|2018) picks the shipped
    model of that vocabulary, or checks `model` speaks it."""
    from vtag.io.shard import canonical_names, parse_shard, select_shard

    results = ResultsFile(output)
    if segments:
        from vtag.tasks.segments import check_seconds

        check_seconds(segments)
    if (segments or thumbnails) and results.format != "jsonl":
        raise VtagError(f"{results.path}: segments and thumbnails go in JSONL results only: use a .jsonl file")
    if (segments or thumbnails) and results_from is not None:
        raise VtagError("--segments and --thumbnails/--report are not available with --ray yet: run without --ray")
    if runtime != "torch" and results_from is not None:
        raise VtagError(f"--runtime {runtime} is not available with --ray yet: the Ray actors score with PyTorch")
    keep_thumbnails = THUMBNAILS_PER_FILE if thumbnails else 0
    lock = OutputLock(results.path)  # a second batch on this output refuses instead of tagging all again
    try:
        roots: dict[str, str] = {}
        files = find_media(folders, recursive, roots)
        if not files:
            raise VtagError(f"no video or audio files found in {', '.join(map(str, folders))}" + ("" if recursive else " (add --recursive for subfolders)"))
        if shard is not None:
            names = [str(f) for f in files]
            chosen = set(select_shard(names, canonical_names(names, roots), parse_shard(shard)))
            files = [f for f in files if str(f) in chosen]
        tagger = Tagger(model, device=device, random_weights=random_weights, runtime=runtime, vocabulary=vocabulary)
        tagger.extractor  # load (or fail on missing weights) before any worker starts
        # One name per file however its folder was spelt (`clips` and `/home/me/clips`): the results hold
        # these, so a resume from another working directory or spelling finds its work.
        paths = list(dict.fromkeys(result_key(f) for f in files))
        finished, failed_before = results.prepare(retry_failed, {results.key(p) for p in paths})
        todo = [p for p in paths if results.key(p) not in finished and results.key(p) not in failed_before]
        earlier = [p for p in paths if results.key(p) in failed_before]
        summary = BatchSummary(total=len(paths), skipped=len(paths) - len(todo) - len(earlier))
        if on_start:
            on_start(summary)
        for path in earlier:
            # Still failed: a rerun that called them "already done" would exit 0 over files with no tags.
            error = f"{failed_before[results.key(path)]} (failed in an earlier run: rerun with --retry-failed)"
            summary.failed += 1
            summary.failed_before += 1
            summary.failures.append((path, error))
            if on_file:
                on_file(path, error, summary)
        started = time.perf_counter()
        assembler = _Assembler(tagger, top_k, segments)

        inference_errors: dict[int, str] = {}  # a file whose frames broke the model fails alone

        def handle(message, current: dict) -> None:
            kind, index = message[0], message[1]
            path = todo[index]
            if kind == "start":
                current[message[2]] = index
            elif kind == "thumbnails":
                assembler.thumbnails[index] = message[2]
            elif kind in ("frames", "audio"):
                if index in inference_errors:
                    return
                try:
                    (assembler.frames if kind == "frames" else assembler.log_mel)(index, message[2])
                except Exception as exc:  # e.g. out of memory on one huge video: that file fails, not the batch
                    inference_errors[index] = str(exc) if isinstance(exc, VtagError) else f"{path}: {type(exc).__name__}: {exc}"
            elif kind in ("done", "error"):
                error = inference_errors.pop(index, None) or (message[2] if kind == "error" else None)
                prediction = None
                if error is None:
                    try:
                        prediction, duration = assembler.finish(index, path, message[2])
                        summary.video_seconds += duration
                    except VtagError as exc:
                        error = str(exc)
                assembler.drop(index)
                record(path, prediction, error)
                for pid, i in list(current.items()):
                    if i == index:
                        del current[pid]

        def record(path: str, prediction, error: str | None, seconds: float = 0.0) -> None:
            try:
                line = prediction_line(prediction, path, error, results.format)
            except VtagError as exc:  # a result that cannot be written fails that file alone
                prediction, error = None, str(exc)
                line = prediction_line(None, path, error, results.format)
            results.append(line)
            if error is None:
                summary.done += 1
                summary.video_seconds += seconds
            else:
                summary.failed += 1
                summary.failures.append((path, error))
            if on_file:
                on_file(path, error, summary)

        try:
            if results_from is not None and todo:
                for index, prediction, error, seconds in results_from(todo, tagger):
                    record(todo[index], prediction, error, seconds)
            elif workers <= 0:
                current: dict = {}
                for index, path in enumerate(todo):
                    for message in _safe_messages(index, path, max_frames, keep_thumbnails):
                        handle(message, current)
            else:
                _run_with_workers(todo, workers, max_frames, handle, record, keep_thumbnails)
        except KeyboardInterrupt:
            summary.interrupted = True
        summary.elapsed_s = time.perf_counter() - started
        return summary
    finally:
        lock.release()


def _run_with_workers(todo: list[str], workers: int, max_frames: int, handle, record, thumbnails: int = 0) -> None:
    ctx = mp.get_context("spawn")  # fork after torch's thread pools start is unsafe
    tasks = ctx.Queue()
    results = ctx.Queue(maxsize=2 * workers + 2)  # bounded: decoders wait for the model, memory stays flat
    for item in enumerate(todo):
        tasks.put(item)
    workers = min(workers, len(todo))
    for _ in range(workers):
        tasks.put(None)

    def spawn():
        p = ctx.Process(target=_worker_main, args=(tasks, results, max_frames, thumbnails, os.getpid()), daemon=True)
        p.start()
        return p

    procs = [spawn() for _ in range(workers)]
    current: dict[int, int] = {}  # worker pid -> index of the file it is decoding
    remaining = len(todo)
    closed: set[int] = set()
    try:
        while remaining:
            try:
                message = results.get(timeout=0.5)
            except queue.Empty:
                message = None
            if message is not None:
                handle(message, current)
                if message[0] in ("done", "error"):
                    remaining -= 1
                    closed.add(message[1])
                continue
            for i, p in enumerate(procs):
                if p.exitcode is None or p.exitcode == 0:
                    continue
                index = current.pop(p.pid, None)
                if index is None:
                    raise RuntimeError(f"a decoding worker exited with code {p.exitcode} before taking a file")
                if index not in closed:
                    # FFmpeg crashed the process: that file fails, a fresh worker takes its place (and
                    # the end-of-work marker the dead one never read).
                    record(todo[index], None, f"{todo[index]}: the decoder crashed (exit code {p.exitcode})")
                    closed.add(index)
                    remaining -= 1
                procs[i] = spawn()
            if all(p.exitcode == 0 for p in procs) and remaining:
                raise RuntimeError(f"{remaining} files were never reported by the decoding workers")
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=5)
