"""`vtag batch --ray` and `vtag extract --ray`: the same work spread over a Ray cluster.

    driver (this process)                    Ray cluster
    ---------------------                    -----------
    submits one decode task per file  --->   CPU tasks: `tasks.batch._safe_messages` (PyAV decode + log-mel),
    (at most `window` files in flight)       retried by Ray when their worker process dies
    hands decoded files to an actor   --->   actors (one per GPU, or one on CPU) holding the model once;
    in calls of `files_per_call`             the decoded frames go task -> actor, not via the driver
    writes each result as it arrives  <---   small results: a Prediction, or a file's YT8M features

The driver keeps the only state, exactly as the one-machine path: `vtag batch` writes through the same
`ResultsFile` (one fsynced line per file, so a killed driver reruns without duplicates or losses) and
`vtag extract` through the same record writer. A decode task whose process dies is retried (Ray's
`max_retries`); one that dies every time costs that file only, reported as a per-file error.

Decoded frames travel at the video's own size (a 1080p frame is 6 MB; YT8M keeps at most 300), so the
window, not the library size, bounds what the object store holds.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

from vtag.errors import VtagError

DECODE_RETRIES = 3
FILES_PER_CALL = 4  # files per actor call: amortises Ray's per-call cost, keeps results streaming
TEST_CRASH_ENV = "VTAG_TEST_CRASH_ONCE"  # "NAME=MARKER": tests make one file's first decode kill its worker



def require_ray():
    try:
        import ray
    except ImportError:
        raise VtagError("--ray needs Ray: pip install 'vtag[ray]'") from None
    return ray


@contextmanager
def connected(address: str | None):
    """Ray, initialised: an existing connection in this process as it is; else a new local cluster
    (address None), the running cluster (`auto`) or the one at `address`; shut down after."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=False, configure_logging=True)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = address or "a local cluster"
        raise VtagError(f"--ray-address {where}: cannot start or reach Ray ({' '.join(str(exc).split())})") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _crash_for_tests(path: str) -> None:
    hook = os.environ.get(TEST_CRASH_ENV)
    if not hook:
        return
    name, marker = hook.split("=", 1)
    if Path(str(path)).name == name and not os.path.exists(marker):
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)


def decode_file(index: int, path: str, max_frames: int):
    """A Ray task: (error or None, the file's decode messages) from batch's per-file decoder."""
    from vtag.tasks.batch import _safe_messages

    _crash_for_tests(path)
    messages = list(_safe_messages(index, path, max_frames))
    error = next((m[2] for m in messages if m[0] == "error"), None)
    return error, (None if error else messages)


class FileWorker:
    """A Ray actor: the model (or the extractors) loaded once; turns decoded files into results."""

    def __init__(self, task: str, device: str, top_k: int, extractor_args: dict, model=None,
                 random_weights: bool = False):
        import warnings

        # Ray hands frames over as read-only views of its object store; the model only reads them.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        self.task = task
        if task == "batch":
            from vtag.tasks.batch import _Assembler
            from vtag.tasks.classify import Tagger

            tagger = Tagger(model, device=device, random_weights=random_weights)
            tagger.extractor
            self.assembler = _Assembler(tagger, top_k)
        else:
            from vtag.features.extract import FeatureExtractor

            self.extractor = FeatureExtractor(device=device, **extractor_args)

    def run(self, paths: Sequence[str], *decoded) -> list[tuple[object, str | None, float]]:
        return [self._one(path, messages) for path, messages in zip(paths, decoded)]

    def _one(self, path: str, messages) -> tuple[object, str | None, float]:
        import numpy as np

        from vtag.io.remote import is_url, stem

        try:
            if self.task == "batch":
                index = messages[0][1]
                for kind, _, payload in messages:
                    if kind == "frames":
                        self.assembler.frames(index, payload)
                    elif kind == "audio":
                        self.assembler.log_mel(index, payload)
                    elif kind == "done":
                        try:
                            prediction, duration = self.assembler.finish(index, path, payload)
                        finally:
                            self.assembler.drop(index)
                        return prediction, None, duration or 0.0
            else:
                visual, audio, done = [], None, None
                for kind, _, payload in messages:
                    if kind == "frames":
                        visual.append(self.extractor.preprocessed_features(payload))
                    elif kind == "audio":
                        audio = self.extractor.audio_features(payload)
                    elif kind == "done":
                        done = payload
                has_video, _, duration = done
                visual_rows = np.concatenate(visual) if visual else None
                video_id = stem(path) if is_url(path) else Path(path).stem
                features = self.extractor.assemble(video_id, visual_rows if has_video and visual else None,
                                                   audio, duration, path=path)
                return features, None, duration or 0.0
        except VtagError as exc:
            return None, str(exc), 0.0
        except Exception as exc:  # e.g. out of memory on one huge video: that file fails, not the run
            return None, f"{path}: {type(exc).__name__}: {exc}", 0.0
        return None, f"{path}: the decoder sent no end of file", 0.0


def run_files(todo: Sequence[str], *, task: str, address: str | None,
              max_frames: int, device: str = "auto", top_k: int = 5, model=None, random_weights: bool = False,
              extractor_args: dict | None = None, files_per_call: int = FILES_PER_CALL):
    """Decode every file of `todo` in Ray tasks, run the model in actors; yields (index, result,
    error, seconds of media) in this process, once per file, as results arrive (completion order)."""
    from vtag.io.remote import is_url

    # Workers may run in another folder (or on another machine sharing the file system): absolute paths.
    sources = [p if is_url(p) else os.path.abspath(p) for p in map(str, todo)]
    with connected(address) as ray:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0)) if device != "cpu" else 0
        cpus = max(1, int(resources.get("CPU", 1)))
        actor_count = max(1, gpus)
        # Two returns: the driver fetches the small status, the frames go straight to an actor.
        decode = ray.remote(num_returns=2, max_retries=DECODE_RETRIES, num_cpus=1)(decode_file)
        actor_class = ray.remote(max_restarts=2, max_task_retries=2)(FileWorker)
        placement = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": 1}
        actor_device = "cuda" if gpus else "cpu"
        actors = [actor_class.options(**placement).remote(task, actor_device, top_k, extractor_args or {},
                                                           model, random_weights) for _ in range(actor_count)]
        window = max(4, 2 * cpus + files_per_call * actor_count)  # decoded-not-yet-tagged files held at most
        next_file = 0
        decoding: dict = {}   # status ref -> (index, messages ref)
        decoded: list[tuple[int, object]] = []
        calls: dict = {}      # ref -> (actor number, indices)
        load = [0] * actor_count
        while next_file < len(todo) or decoding or decoded or calls:
            while next_file < len(todo) and len(decoding) + len(decoded) < window:
                status, messages = decode.remote(next_file, sources[next_file], max_frames)
                decoding[status] = (next_file, messages)
                next_file += 1
            for number in sorted(range(actor_count), key=lambda n: load[n]):
                full = len(decoded) >= files_per_call or (not decoding and next_file >= len(todo))
                if decoded and load[number] < 2 and (load[number] == 0 or full):
                    chunk, decoded[:] = decoded[:files_per_call], decoded[files_per_call:]
                    ref = actors[number].run.remote([sources[i] for i, _ in chunk], *[r for _, r in chunk])
                    calls[ref] = (number, [i for i, _ in chunk])
                    load[number] += 1
            ready, _ = ray.wait(list(decoding) + list(calls), num_returns=1, timeout=1.0, fetch_local=False)
            for ref in ready:
                if ref in decoding:
                    index, messages = decoding.pop(ref)
                    error = _decode_error(ray, ref, todo[index])
                    if error is not None:
                        yield index, None, error, 0.0
                    else:
                        decoded.append((index, messages))
                    continue
                number, indices = calls.pop(ref)
                load[number] -= 1
                try:
                    results = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    results = [(None, f"{todo[i]}: the model worker failed ({_first_line(exc)})", 0.0)
                               for i in indices]
                for index, (result, error, seconds) in zip(indices, results):
                    yield index, result, error, seconds


def _decode_error(ray, ref, path: str) -> str | None:
    """The error of a finished decode task, from its small status return (not the frames)."""
    try:
        error = ray.get(ref)
    except ray.exceptions.RayError as exc:
        return f"{path}: the decoder crashed ({_first_line(exc)}); tried {DECODE_RETRIES + 1} times"
    return error


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300]


def extract_on_ray(paths, output, *, address: str | None = None, **kwargs):
    """`features.extract.extract_to_records` with the files extracted on Ray (same writer, shards and
    manifest); `kwargs` are extract_to_records's."""
    from vtag.features.extract import extract_to_records

    require_ray()

    def results_from(todo, extractor):
        args = {"random_weights": extractor.random_weights, "max_frames": extractor.max_frames,
                "batch_size": extractor.batch_size}
        for index, features, error, _ in run_files(todo, task="extract", address=address,
                                                    max_frames=extractor.max_frames, device=str(extractor.device),
                                                    extractor_args=args):
            yield index, features, error

    return extract_to_records(paths, output, results_from=results_from, **kwargs)


def batch_on_ray(folders, output, *, address: str | None = None, **kwargs):
    """`tasks.batch.run_batch` with the files decoded and tagged on Ray (same results file, resume,
    counts and callbacks); `kwargs` are run_batch's."""
    from vtag.tasks.batch import run_batch

    require_ray()  # before the model loads: a missing extra should cost nothing
    options = {k: kwargs.get(k, d) for k, d in (("max_frames", 300), ("device", "auto"), ("top_k", 5),
                                                  ("random_weights", False))}

    def results_from(todo, tagger):
        # the driver resolved the model already: the actors load that same folder, by absolute path
        yield from run_files(todo, task="batch", address=address, model=str(Path(tagger.model_dir).resolve()),
                             **options)

    return run_batch(folders, output, results_from=results_from, **kwargs)
