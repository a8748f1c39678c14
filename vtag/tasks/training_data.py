"""What a training epoch iterates over: the records in memory (or streamed), in an order that is a
pure function of (seed, epoch), sliced per process; mixup drawn from (seed, step). Both make resumed
runs exact."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from vtag.errors import VtagError
from vtag.tasks.evaluate import load_features
from vtag.tasks.train_config import TrainConfig


@dataclass
class InMemorySet:
    visual: torch.Tensor  # [N, Dv]
    audio: torch.Tensor  # [N, Da]
    labels: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.labels)

    def targets(self, index: np.ndarray, num_classes: int) -> torch.Tensor:
        """Multi-hot rows for `index`; built per batch (a dense [N, C] matrix would be ~450 MB)."""
        target = torch.zeros(len(index), num_classes)
        lists = [self.labels[i] for i in index]
        rows = np.repeat(np.arange(len(index)), [len(x) for x in lists])
        if rows.size:
            target[torch.from_numpy(rows), torch.from_numpy(np.concatenate(lists))] = 1.0
        return target


def load_set(paths: list[str], input_spec: str, num_classes: int, skip_bad: bool, what: str) -> InMemorySet:
    visual, audio, labels = load_features(paths, input_spec, num_classes, skip_bad)
    unlabelled = sum(1 for x in labels if x is None)
    if unlabelled:
        raise VtagError(f"{what} records: {unlabelled} of {len(labels)} have no labels (test records?); "
                        "training and validation need labelled records")
    return InMemorySet(torch.from_numpy(visual), torch.from_numpy(audio), labels)


def epoch_order(seed: int, epoch: int, size: int) -> np.ndarray:
    """The visiting order of one epoch: a pure function of (seed, epoch), so resume can rebuild it."""
    return np.random.default_rng([seed, epoch]).permutation(size)


def rank_slice(order: np.ndarray, rank: int, world: int) -> np.ndarray:
    """This process's share of an epoch; every rank gets the same count (DDP needs equal step counts)."""
    per_rank = len(order) // world
    return order[rank * per_rank:(rank + 1) * per_rank]


def mix_batch(visual: torch.Tensor, audio: torch.Tensor, target: torch.Tensor, alpha: float, seed: int,
              step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mixup: each video blended with another of the batch, its label vector by the same weight.

    The draw depends only on (seed, step), so a resumed run mixes exactly as the uninterrupted one.
    """
    rng = np.random.default_rng((seed, step, 0x6D6978))
    weight = float(rng.beta(alpha, alpha))
    partner = torch.from_numpy(rng.permutation(len(target))).to(target.device)
    return (weight * visual + (1 - weight) * visual[partner], weight * audio + (1 - weight) * audio[partner],
            weight * target + (1 - weight) * target[partner])


def memory_batches(data: InMemorySet, config: TrainConfig, epoch: int, skip: int, dist, num_classes: int):
    order = rank_slice(epoch_order(config.seed, epoch, len(data)), dist.rank, dist.world)
    for start in range(skip * config.batch_size, len(order), config.batch_size):
        index = order[start:start + config.batch_size]
        tensor_index = torch.from_numpy(index)
        yield data.visual[tensor_index], data.audio[tensor_index], data.targets(index, num_classes)


def stream_loader(config: TrainConfig, paths: list[str], num_classes: int, dist):
    from torch.utils.data import DataLoader

    from vtag.tasks.dataset import YT8MDataset

    dataset = YT8MDataset(paths, num_classes, config.input_spec, shuffle=True, seed=config.seed,
                          skip_bad=config.skip_bad, rank=dist.rank, world_size=dist.world)
    return DataLoader(dataset, batch_size=config.batch_size, num_workers=config.workers, drop_last=dist.enabled)


def stream_batches(loader, epoch: int):
    loader.dataset.set_epoch(epoch)
    yield from loader


def estimate_stream_steps(paths: list[str], config: TrainConfig, dist) -> int:
    """Steps per epoch of a streamed set, from a framing-only pass over the files (no decoding); it
    feeds the learning-rate schedule and the ETA."""
    from vtag.io.tfrecord import iter_tfrecord

    records = sum(1 for path in paths for _ in iter_tfrecord(path, skip_bad=config.skip_bad))
    per_rank = records // dist.world
    return max(1, per_rank // config.batch_size if dist.enabled else math.ceil(per_rank / config.batch_size))
