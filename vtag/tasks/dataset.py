"""A PyTorch `IterableDataset` over YT8M record files.

Files are split across DataLoader workers and distributed ranks (each of the `world_size *
num_workers` readers takes every n-th file; with fewer files than readers, every reader scans all files
and takes every n-th record instead, so no reader is left empty). Shuffling is two-level: the file order
per epoch, then a seeded shuffle buffer per reader; `set_epoch` changes both, like
`DistributedSampler.set_epoch`.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from vtag.errors import VtagError
from vtag.io.tfrecord import ReadStats, decode_message, frame_records, Malformed
from vtag.io.fast_reader import read_video_level_arrays
from vtag.io.paths import expand_paths
from vtag.io.records import INPUT_SPECS, fast_video_entry, pool_frames, read_records

Sample = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def file_level(path: str | os.PathLike) -> str:
    """'video' or 'frame': the level of a YT8M file, from its first record (only that is read)."""
    from vtag.io.remote import is_url, open_url

    try:
        with (open_url(path, block_size=2**16) if is_url(path) else open(path, "rb")) as f:
            header = f.read(12)
            if len(header) < 12:
                return "video"  # empty or cut short: the reader reports it
            length = int.from_bytes(header[:8], "little")
            payload = f.read(length + 4)
    except OSError as exc:
        raise VtagError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    data = header + payload
    for _, start, end in frame_records(data, path, True, ReadStats(quiet=True)):
        if fast_video_entry(data, start, end) is not None:
            return "video"
        try:
            _, lists = decode_message(data, start, end)
        except Malformed:
            break
        return "frame" if lists and ("rgb" in lists or "audio" in lists) else "video"
    return "video"


def _distributed() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class YT8MDataset(IterableDataset):
    """Yields `(visual float32[Dv], audio float32[Da], labels float32[num_classes] multi-hot)`.

    `input_spec` "mean" (Dv=1024, Da=128) reads video-level means or pools frames; "mean+std" (2048,
    256) needs frame-level records. `num_classes` is the vocabulary size (3,862 for 2018, 4,716 for
    2017); a label outside it is a bad record. Unlabelled records are an error unless
    `require_labels=False` (then their labels are all zero). `rank`/`world_size` default to
    torch.distributed's when it is initialised.
    """

    def __init__(
        self,
        paths: str | os.PathLike | Sequence[str | os.PathLike],
        num_classes: int,
        input_spec: str = "mean",
        shuffle: bool = False,
        buffer_size: int = 4096,
        seed: int = 0,
        skip_bad: bool = False,
        require_labels: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__()
        if input_spec not in INPUT_SPECS:
            raise VtagError(f"input spec must be one of {', '.join(INPUT_SPECS)}, not {input_spec!r}")
        if num_classes <= 0:
            raise VtagError(f"num_classes must be positive, not {num_classes}")
        self.files: list[Path] = expand_paths(paths)
        self.num_classes = int(num_classes)
        self.input_spec = input_spec
        self.shuffle = shuffle
        self.buffer_size = max(1, int(buffer_size))
        self.seed = int(seed)
        self.skip_bad = skip_bad
        self.require_labels = require_labels
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.stats = ReadStats()  # counts of the last iteration in this process (worker 0 / no workers)
        self.visual_dim, self.audio_dim = INPUT_SPECS[input_spec]
        if input_spec == "mean+std":
            video_level = [f for f in self.files if file_level(f) == "video"]
            if video_level:
                raise VtagError(f"{video_level[0]}: video-level records hold only mean features; input spec "
                                "'mean+std' needs frame-level records (or use input spec 'mean')")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _reader_slot(self) -> tuple[int, int]:
        rank, world = _distributed()
        rank = self.rank if self.rank is not None else rank
        world = self.world_size if self.world_size is not None else world
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank * workers + worker, world * workers

    def _samples(self, path: Path, stats: ReadStats) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None, str]]:
        if file_level(path) == "video" and self.input_spec == "mean":
            arrays = read_video_level_arrays([path], skip_bad=self.skip_bad, num_classes=self.num_classes,
                                             stats=stats)
            for i, vid in enumerate(arrays.ids):
                yield arrays.rgb[i], arrays.audio[i], arrays.labels[i], vid
        else:
            for rec in read_records([path], skip_bad=self.skip_bad, num_classes=self.num_classes, stats=stats):
                if rec.level == "video" and self.input_spec != "mean":
                    raise VtagError(f"{path}: record {rec.id} is video-level (means only); input spec "
                                    f"{self.input_spec!r} needs frame-level records")
                visual, audio = pool_frames(rec.rgb, rec.audio, self.input_spec)
                yield visual, audio, rec.labels, rec.id

    def _tensors(self, visual: np.ndarray, audio: np.ndarray, labels: np.ndarray | None) -> Sample:
        target = torch.zeros(self.num_classes, dtype=torch.float32)
        if labels is not None and labels.size:
            target[torch.from_numpy(labels)] = 1.0
        return (torch.from_numpy(np.array(visual, dtype=np.float32)),
                torch.from_numpy(np.array(audio, dtype=np.float32)), target)

    def __iter__(self) -> Iterator[Sample]:
        slot, slots = self._reader_slot()
        files = list(self.files)
        rng = random.Random(f"{self.seed}:{self.epoch}")  # same file order on every reader
        if self.shuffle:
            rng.shuffle(files)
        by_file = len(files) >= slots
        mine = files[slot::slots] if by_file else files
        stats = ReadStats()
        self.stats = stats

        def stream() -> Iterator[tuple]:
            n = 0
            for path in mine:
                for visual, audio, labels, vid in self._samples(path, stats):
                    if by_file or n % slots == slot:
                        if labels is None and self.require_labels:
                            raise VtagError(f"{path}: video {vid} has no labels (a test set?); training and "
                                            "evaluation need labelled records")
                        yield visual, audio, labels
                    n += 1

        if not self.shuffle:
            for item in stream():
                yield self._tensors(*item)
            return
        # the buffer holds label indices, not multi-hot vectors: 4,096 x 15 KB of zeros is not free
        buffer_rng = random.Random(f"{self.seed}:{self.epoch}:{slot}")
        buffer: list[tuple] = []
        for item in stream():
            if len(buffer) < self.buffer_size:
                buffer.append(item)
                continue
            i = buffer_rng.randrange(len(buffer))
            buffer[i], item = item, buffer[i]
            yield self._tensors(*item)
        buffer_rng.shuffle(buffer)
        for item in buffer:
            yield self._tensors(*item)
