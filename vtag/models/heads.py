"""A model for another vocabulary on a trained model's trunk: its hidden layers (and neighbour memory)
unchanged, a new classifier ("head") per network for the other vocabulary's classes.

The 2017 release (4,716 classes, the paper's vocabulary) has 1,721 labelled videos here, the 2018 one
47,770: too few to train a network for 2017, enough to fit a head on a trunk trained on 2018. The new
head starts from the 2018 rows of classes with the same name (3,328 of the 3,862 2018 names are 2017
names, case-insensitive; 291 more match by singular/plural or a qualifier, see `name_matches`) and the
memory's 2018 labels are mapped to the 2017 ids of those classes.

On disk a head model is a model folder whose `config.json` names its `trunk` (the folder it shares
tensors with, relative to its own) and whose `model.safetensors` holds only the tensors of its own:
the classifiers and the memory's labels. `load_model` reads the rest from the trunk's file, as stored
there (no re-quantisation), so the head adds 15 MB instead of a second copy of the 45 MB trunk.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vtag.errors import VtagError
from vtag.io.atomic import atomic_write_bytes, atomic_write_json
from vtag.io.vocab import Vocabulary
from vtag.models.architectures import FusionModel
from vtag.models.packing import quantise_state
from vtag.models.trunk_files import file_sha256, is_own
from vtag.models.registry import build_model
from vtag.models.storage import CONFIG_FILE, FORMAT, WEIGHTS_FILE

UNMATCHED_BIAS = -8.0  # sigmoid(-8) = 3e-4: a class no 2018 row stands for starts out as rare


def _name_key(name: str) -> str:
    return unicodedata.normalize("NFKC", name).strip().casefold()


def _spellings(key: str) -> list[str]:
    """The forms a target name may take in the source vocabulary, most literal first: itself, then its
    singular or plural (the 2017 `Games` is the 2018 `Game`)."""
    forms = [key]
    if key.endswith("ies"):
        forms.append(key[:-3] + "y")
    if key.endswith("es"):
        forms.append(key[:-2])
    if key.endswith("s"):
        forms.append(key[:-1])
    else:
        forms.append(key + "s")
    return forms


def name_matches(source: Vocabulary, target: Vocabulary, loose: bool = True) -> np.ndarray:
    """int64 [M, 2]: (source index, target index) of classes that are the same class by name, each
    source and target class matched at most once. First, names equal ignoring case and surrounding
    spaces; then (`loose`), for the target names still unmatched, in order: the same name after Unicode
    NFKC, its singular or plural, or the one source name that is it plus a qualifier in parentheses
    (the 2017 `Trailer` is the 2018 `Trailer (promotion)`). On the 2017 selection split the loose rules
    lift the transferred head's GAP from 0.618 to 0.627 (docs/RESULTS.md, section 2.5)."""
    target_index: dict[str, int] = {}
    for index, name in enumerate(target.names):
        target_index.setdefault(name.strip().casefold(), index)
    pairs, taken, taken_source = [], set(), set()
    for index, name in enumerate(source.names):
        found = target_index.get(name.strip().casefold())
        if found is not None and found not in taken and name.strip():
            pairs.append((index, found))
            taken.add(found)
            taken_source.add(index)
    if loose:
        by_key: dict[str, int] = {}
        by_stem: dict[str, list[int]] = {}
        for index, name in enumerate(source.names):
            key = _name_key(name)
            by_key.setdefault(key, index)
            by_stem.setdefault(re.sub(r"\s*\([^()]*\)$", "", key), []).append(index)
        for index, name in enumerate(target.names):
            key = _name_key(name)
            if index in taken or not key:
                continue
            found = next((by_key[form] for form in _spellings(key)
                          if form in by_key and by_key[form] not in taken_source), None)
            if found is None and len(by_stem.get(key, [])) == 1 and by_stem[key][0] not in taken_source:
                found = by_stem[key][0]
            if found is not None:
                pairs.append((found, index))
                taken.add(index)
                taken_source.add(found)
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def networks(model: FusionModel) -> list[FusionModel]:
    """The networks whose logits the model averages: an ensemble's members, or the model itself."""
    return list(model.members) if model.config.members > 1 else [model]


def _check_transferable(model: FusionModel) -> None:
    for network in networks(model):
        if type(network).classify is not FusionModel.classify or not isinstance(getattr(network, "classifier", None), nn.Linear):
            raise VtagError(f"model '{model.config.name}' has no single linear classifier to replace; "
                            "a head for another vocabulary needs one (the early- and late-fusion FC models have it)")


def trunk_features(network: FusionModel, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    """What the network's classifier sees: [B, hidden]."""
    if network.config.input_norm:
        visual, audio = network.input_norm["visual"](visual), network.input_norm["audio"](audio)
    return torch.cat(list(network.encode(visual, audio).values()), dim=-1)


def _remapped_memory(model: FusionModel, pairs: np.ndarray) -> tuple[dict, dict[str, torch.Tensor]]:
    """The memory's settings and label buffers with each label mapped to the target id of its class;
    labels of classes with no match are dropped (their videos still vote for their other labels)."""
    memory = model.memory
    lookup = np.full(model.config.num_classes, -1, dtype=np.int64)
    lookup[pairs[:, 0]] = pairs[:, 1]
    offsets = memory.label_offsets.numpy().astype(np.int64)
    mapped = lookup[memory.label_values.numpy().astype(np.int64)]
    keep = mapped >= 0
    kept_before = np.concatenate([[0], np.cumsum(keep)])
    new_offsets = kept_before[offsets]
    values = mapped[keep]
    settings = {**model.config.memory, "labels": int(len(values))}
    return settings, {"memory.label_offsets": torch.from_numpy(new_offsets.astype(np.int32)),
                      "memory.label_values": torch.from_numpy(values.astype(np.int16))}


def transfer_head(model: FusionModel, source: Vocabulary, target: Vocabulary,
                  pairs: np.ndarray | None = None) -> FusionModel:
    """A copy of `model` for `target`'s classes: same trunk (and memory, labels mapped), each classifier
    row of a class whose name `source` also has copied from there, the others zero with a low bias.
    `pairs` are the matched classes when the caller has them already (default: `name_matches`)."""
    _check_transferable(model)
    if model.config.num_classes != len(source):
        raise VtagError(f"the model has {model.config.num_classes} classes, the {source.source} vocabulary {len(source)}")
    pairs = name_matches(source, target) if pairs is None else pairs
    if not len(pairs):
        raise VtagError(f"no class name of the {source.source} vocabulary is in the {target.source} one: nothing to transfer")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    memory_settings = model.config.memory
    if memory_settings is not None:
        memory_settings, memory_state = _remapped_memory(model, pairs)
        state.update(memory_state)
    config = replace(model.config, num_classes=len(target), memory=memory_settings)
    twin = build_model(config)
    prefixes = [f"members.{i}." for i in range(config.members)] if config.members > 1 else [""]
    for prefix in prefixes:
        weight, bias = state[prefix + "classifier.weight"], state[prefix + "classifier.bias"]
        new_weight = torch.zeros(len(target), weight.shape[1])
        new_bias = torch.full((len(target),), UNMATCHED_BIAS)
        new_weight[pairs[:, 1]] = weight[pairs[:, 0]]
        new_bias[pairs[:, 1]] = bias[pairs[:, 0]]
        state[prefix + "classifier.weight"], state[prefix + "classifier.bias"] = new_weight, new_bias
    twin.load_state_dict(state, strict=True)
    return twin.eval()


def save_head_model(model: FusionModel, directory: str | Path, trunk: str | Path, extra: dict | None = None,
                    dtype: str = "int4") -> Path:
    """Writes the head model into `directory`: config.json (naming `trunk`) and only its own tensors."""
    from safetensors.torch import save

    directory, trunk = Path(directory), Path(trunk)
    if not (trunk / WEIGHTS_FILE).is_file():
        raise VtagError(f"{trunk}: no {WEIGHTS_FILE} to share a trunk with")
    directory.mkdir(parents=True, exist_ok=True)
    quantised = dtype if dtype in ("int8", "int4") else None
    state = {k: v for k, v in model.state_dict().items() if is_own(k)}
    tensors = quantise_state(state, quantised, torch.float16 if quantised else torch.float32)
    relative = Path(os.path.relpath(trunk.resolve(), directory.resolve()))
    meta = {"format": FORMAT, "name": model.config.name, "model": model.config.to_dict(),
            "weights_dtype": quantised or "float32", "trunk": relative.as_posix(),
            "trunk_sha256": file_sha256(trunk / WEIGHTS_FILE), **(extra or {})}
    atomic_write_bytes(directory / WEIGHTS_FILE, save(tensors, metadata={"format": "pt"}))
    atomic_write_json(directory / CONFIG_FILE, meta)
    return directory
