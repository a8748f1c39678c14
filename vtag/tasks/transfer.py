"""`vtag transfer`: a head for another vocabulary fitted on a trained model's frozen trunk.

The trunk's features are computed once; only the classifiers (one per network of an ensemble) are
trained, with binary cross-entropy on the averaged logits and an L2 pull towards the rows they started
from (the name-matched rows of the source vocabulary), so that a class seen a few times in the few
target videos keeps what the trunk's own training taught it. A model's neighbour memory is kept with
its labels mapped (vtag.models.heads) and blended in when the validation split is scored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from vtag.errors import VtagError
from vtag.io.fast_reader import read_video_level_arrays
from vtag.io.paths import expand_paths
from vtag.io.vocab import load_vocabulary
from vtag.models.heads import name_matches, networks, save_head_model, transfer_head, trunk_features
from vtag.models.storage import load_model, resolve_model_dir
from vtag.tasks.metrics import EvaluationMetrics

# the head's optimiser settings chosen on the 2017 selection split (docs/RESULTS.md section 2.5);
# `vtag transfer` repeats them as its option defaults, kept equal by tests/tasks/test_transfer.py
HEAD_LR = 3e-3
HEAD_WEIGHT_DECAY = 1e-3


@dataclass
class TransferResult:
    out: Path
    train_videos: int
    valid_videos: int
    history: list[dict] = field(default_factory=list)  # per epoch: loss, and GAP/Hit@1 when validated


def _features(model, visual: np.ndarray, audio: np.ndarray, batch: int = 2048) -> torch.Tensor:
    """[networks, N, hidden] float32: what each network's classifier sees."""
    parts = []
    with torch.no_grad():
        for start in range(0, len(visual), batch):
            v, a = torch.from_numpy(visual[start:start + batch]), torch.from_numpy(audio[start:start + batch])
            parts.append(torch.stack([trunk_features(n, v, a) for n in networks(model)]))
    return torch.cat(parts, dim=1)


def _logits(weight: torch.Tensor, bias: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    return (torch.einsum("mnh,mch->mnc", features, weight) + bias[:, None]).mean(0)


def _score(model, weight, bias, features, visual, audio, labels) -> dict:
    with torch.no_grad():
        logits = _logits(weight, bias, features)
        if model.config.memory is not None:
            logits = model.memory.blend(torch.from_numpy(visual), torch.from_numpy(audio), logits)
        metrics = EvaluationMetrics(model.config.num_classes)
        metrics.accumulate(torch.sigmoid(logits.double()).numpy(), labels)
    return metrics.summary()


def fit_head(model, train: tuple[np.ndarray, np.ndarray, np.ndarray], valid=None, epochs: int = 8,
             lr: float = HEAD_LR, weight_decay: float = HEAD_WEIGHT_DECAY, batch_size: int = 128, seed: int = 0,
             progress: Callable[[dict], None] | None = None) -> list[dict]:
    """Trains `model`'s classifiers in place on (visual, audio, multi-hot labels) with the trunk frozen.
    Returns the per-epoch history (GAP and Hit@1 on `valid` when given)."""
    if epochs < 0 or lr <= 0 or weight_decay < 0 or batch_size < 1:
        raise VtagError("transfer needs --epochs >= 0, --lr > 0, --weight-decay >= 0, --batch-size >= 1")
    if epochs == 0:  # the name-matched rows as they are: the baseline a trained head has to beat
        return []
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    nets = networks(model)
    start_weight = torch.stack([n.classifier.weight.detach() for n in nets])
    start_bias = torch.stack([n.classifier.bias.detach() for n in nets])
    weight, bias = start_weight.clone().requires_grad_(), start_bias.clone().requires_grad_()
    features = _features(model, train[0], train[1])
    targets = torch.from_numpy(train[2])
    valid_features = _features(model, valid[0], valid[1]) if valid is not None else None
    optimiser = torch.optim.Adam([weight, bias], lr=lr)
    history = []
    for epoch in range(1, epochs + 1):
        order, total = torch.randperm(len(targets), generator=generator), 0.0
        for first in range(0, len(order), batch_size):
            rows = order[first:first + batch_size]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                _logits(weight, bias, features[:, rows]), targets[rows], reduction="sum") / len(rows)
            loss = loss + weight_decay * ((weight - start_weight) ** 2).sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(rows)
        entry = {"epoch": epoch, "loss": round(total / len(targets), 5)}
        if valid is not None:
            summary = _score(model, weight, bias, valid_features, *valid)
            entry.update(gap=round(summary["gap"], 4), hit_at_1=round(summary["hit_at_1"], 4))
        history.append(entry)
        if progress:
            progress(entry)
    with torch.no_grad():
        for index, network in enumerate(nets):
            network.classifier.weight.copy_(weight[index])
            network.classifier.bias.copy_(bias[index])
    return history


def _arrays(paths, num_classes: int, what: str):
    files = expand_paths(paths)
    data = read_video_level_arrays(files, num_classes=num_classes)
    if not len(data) or all(labels is None for labels in data.labels):
        raise VtagError(f"the {what} records ({', '.join(map(str, files[:3]))}) hold no labelled videos")
    return (data.rgb, data.audio, data.multi_hot(num_classes)), [str(f) for f in files]


def transfer(model: str | Path | None, vocabulary: str, train: list[str], out: str | Path,
             valid: list[str] | None = None, source_vocabulary: str = "2018", epochs: int = 8,
             lr: float = HEAD_LR, weight_decay: float = HEAD_WEIGHT_DECAY, seed: int = 0, dtype: str = "int4",
             progress: Callable[[dict], None] | None = None) -> TransferResult:
    """`vtag transfer`: fits a `vocabulary` head on `model`'s trunk and writes it to `out` (a model
    folder sharing the trunk's tensors; keep it beside the trunk's folder)."""
    trunk_dir = resolve_model_dir(model)
    base, meta = load_model(trunk_dir)
    if meta.get("trunk"):
        raise VtagError(f"{trunk_dir} is itself a head model; transfer from the model it was made from")
    source, target = load_vocabulary(source_vocabulary), load_vocabulary(vocabulary)
    if str(meta.get("vocabulary", source_vocabulary)) != source.source:
        raise VtagError(f"{trunk_dir} speaks the {meta.get('vocabulary')} vocabulary, not {source.source}")
    pairs = name_matches(source, target)
    head = transfer_head(base, source, target, pairs)
    started = time.time()
    train_arrays, train_files = _arrays(train, len(target), "training")
    valid_arrays, valid_files = _arrays(valid, len(target), "validation") if valid else (None, [])
    history = fit_head(head, train_arrays, valid_arrays, epochs=epochs, lr=lr, weight_decay=weight_decay,
                       seed=seed, progress=progress)
    extra = {"vocabulary": target.source, "transferred_from": {"vocabulary": source.source, "model": str(trunk_dir),
                                                             "classes_matched_by_name": int(len(pairs))},
             "trained_on": train_files, "validated_on": valid_files, "history": history,
             "settings": {"epochs": epochs, "lr": lr, "weight_decay": weight_decay, "seed": seed},
             "seconds": round(time.time() - started, 1)}
    written = save_head_model(head, out, trunk_dir, extra=extra, dtype=dtype)
    return TransferResult(written, len(train_arrays[2]), 0 if valid_arrays is None else len(valid_arrays[2]), history)
