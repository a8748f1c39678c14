"""Giving a trained model a neighbour memory of labelled videos, and taking it away again.

The memory itself (what it stores, how it votes) is `vtag.models.memory`; `vtag.tasks.remember` builds
one from record files for `vtag memory`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from vtag.errors import VtagError
from vtag.models.architectures import network_state
from vtag.models.memory import DEFAULTS, NeighbourMemory, check_settings, joint_key
from vtag.models.packing import pack_int4
from vtag.models.registry import build_model
from vtag.models.storage import load_model


def attach_memory(model: nn.Module, visual: np.ndarray, audio: np.ndarray, labels: Sequence[np.ndarray | None],
                  dim: int = 1024, bits: int = 4, **settings: Any) -> nn.Module:
    """A copy of `model` with a memory of these training videos (means: [N, Dv], [N, Da]; label lists).

    `settings` override DEFAULTS (k, temperature, weight, audio_weight). The returned model's config
    carries the memory settings, so `save_model` / `load_model` round-trip it.
    """
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise VtagError(f"unknown memory setting(s) {', '.join(unknown)}; known: {', '.join(sorted(DEFAULTS))}")
    kept = [i for i, lab in enumerate(labels) if lab is not None and len(lab)]
    if not kept:
        raise VtagError("a neighbour memory needs labelled training videos; these records have no labels")
    visual, audio = np.asarray(visual, np.float32)[kept], np.asarray(audio, np.float32)[kept]
    label_lists = [np.asarray(labels[i], np.int64) for i in kept]
    num_classes = model.config.num_classes
    if max(int(lab.max()) for lab in label_lists) >= num_classes:
        raise VtagError(f"labels run beyond the model's {num_classes} classes: wrong vocabulary for this model")
    input_dim = visual.shape[1] + audio.shape[1]
    dim = min(dim, input_dim, len(kept))
    full = {**DEFAULTS, **settings, "videos": len(kept), "dim": dim, "bits": bits,
            "labels": int(sum(len(lab) for lab in label_lists)), "input_dim": input_dim}
    check_settings(full, "memory")
    memory = NeighbourMemory(full, num_classes, visual.shape[1])
    with torch.no_grad():
        raw = joint_key(torch.from_numpy(visual), torch.from_numpy(audio), full["audio_weight"])
        mean = raw.mean(0)
        # principal directions by an SVD of the centred keys (float64: 35k x 1,152 is small)
        _, _, directions = torch.linalg.svd((raw - mean).double(), full_matrices=False)
        projection = directions[:dim].T.float()
        keys = (raw - mean) @ projection
        levels = 2 ** (full["bits"] - 1) - 1
        # 4 bits: scale to the 99.9th percentile, so that a few outliers do not cost every video resolution
        rank = max(1, round(0.999 * len(keys)))  # torch.quantile refuses tensors this large
        top = keys.abs().amax(0) if full["bits"] == 8 else keys.abs().kthvalue(rank, dim=0).values
        scale = top.clamp_min(1e-12) / levels
        quantised = torch.round(keys / scale).clamp(-levels, levels)
        memory.mean.copy_(mean)
        memory.projection.copy_(projection)
        if full["bits"] == 8:
            memory.keys.copy_(quantised.to(torch.int8))
        else:
            memory.keys.copy_(pack_int4(quantised))
        memory.key_scale.copy_(scale)
        memory.key_norm.copy_(torch.linalg.vector_norm(quantised * scale, dim=-1).clamp_min(1e-12))
        memory.label_offsets.copy_(torch.from_numpy(np.cumsum([0] + [len(lab) for lab in label_lists]).astype(np.int32)))
        memory.label_values.copy_(torch.from_numpy(np.concatenate(label_lists).astype(np.int16)))
    twin = build_model(replace(model.config, memory=full))
    state = network_state(model)
    state.update({f"memory.{k}": v for k, v in memory.state_dict().items()})
    twin.load_state_dict(state, strict=True)
    return twin.eval()


def without_memory(model: nn.Module) -> nn.Module:
    """A copy of `model` without its memory (the network alone), in the same train/eval mode."""
    plain = build_model(replace(model.config, memory=None))
    plain.load_state_dict(network_state(model))
    return plain.train(model.training)


def load_with_and_without_memory(path: str | Path) -> tuple[nn.Module, nn.Module]:
    """(the model with its memory, the network alone), both in eval mode: for measuring what the
    memory adds."""
    hybrid, _ = load_model(path)
    if hybrid.config.memory is None:
        raise VtagError(f"{path}: this model has no neighbour memory; add one with `vtag memory`")
    hybrid.eval()
    return hybrid, without_memory(hybrid)
