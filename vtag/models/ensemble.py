"""Several trained networks of one architecture as one model that averages their logits (`vtag ensemble`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from vtag.errors import VtagError
from vtag.models.architectures import FusionModel, network_state
from vtag.models.registry import build_model
from vtag.models.storage import load_model, resolve_model_dir, save_model


def ensemble_of(models: list[nn.Module]) -> FusionModel:
    """One model averaging the logits of trained models of the same architecture (any memory they
    carry is dropped: give the ensemble its own with `vtag memory`)."""
    if len(models) < 2:
        raise VtagError("an ensemble needs at least two models")
    configs = [replace(m.config, dropout=0.0, memory=None) for m in models]  # dropout: inactive in eval
    if any(m.config.members > 1 for m in models):
        raise VtagError("one of the models is an ensemble already; list its members' folders instead")
    first = configs[0].to_dict()
    for index, config in enumerate(configs[1:], start=2):
        if config != configs[0]:
            differ = sorted(k for k, v in config.to_dict().items() if first[k] != v)
            raise VtagError(f"model {index} differs from model 1 in {', '.join(differ)}: an ensemble needs one architecture")
    ensemble = build_model(replace(models[0].config, memory=None, members=len(models)))
    for member, model in zip(ensemble.members, models):
        member.load_state_dict(network_state(model))
    return ensemble.eval()


def ensemble_folder(models: list[str | Path], out: str | Path, dtype: str = "float32") -> tuple[Path, int]:
    """`vtag ensemble`: loads trained models (folders or run names), writes their ensemble into
    `out`. Returns (out, number of members)."""
    loaded, vocabularies = [], set()
    for given in models:
        net, meta = load_model(resolve_model_dir(given))
        loaded.append(net)
        vocabularies.add(meta.get("vocabulary"))
    if len(vocabularies) > 1:
        raise VtagError(f"the models use different vocabularies ({', '.join(sorted(map(str, vocabularies)))}): "
                        "an ensemble needs one")
    extra = {"input_spec": loaded[0].config.input_spec, "members_of": [str(m) for m in models]}
    vocabulary = vocabularies.pop()
    if vocabulary is not None:
        extra["vocabulary"] = vocabulary
    return save_model(ensemble_of(loaded), out, extra=extra, dtype=dtype), len(loaded)


def ensemble_no_attention(models: list[nn.Module]) -> nn.Module:
    """One `attend-fusion-no-attention` model whose logits are the mean of the given ones' logits.

    That model is one hidden layer per modality and a linear classifier over both, so K of them side
    by side are the same model K times wider: hidden units stacked, classifier columns placed beside
    the matching units and scaled by 1/K. The result loads with `load_model` like any trained model.
    """
    if not models:
        raise VtagError("ensemble_no_attention needs at least one model")
    configs = [m.config for m in models]
    first = configs[0]
    for c in configs:
        if c.name != "attend-fusion-no-attention":
            raise VtagError(f"only attend-fusion-no-attention models can be merged into one, not {c.name}")
        if (c.num_classes, c.input_spec) != (first.num_classes, first.input_spec):
            raise VtagError("models to merge must share the vocabulary size and input spec")
    merged = build_model(replace(first, hidden=sum(c.hidden for c in configs)))
    states = [m.state_dict() for m in models]
    k = len(models)
    out = {}
    for branch in ("visual", "audio"):
        for part in ("weight", "bias"):
            key = f"branches.{branch}.0.0.{part}"
            out[key] = torch.cat([s[key] for s in states])
    halves = [(s["classifier.weight"][:, :c.hidden], s["classifier.weight"][:, c.hidden:])
              for s, c in zip(states, configs)]
    out["classifier.weight"] = torch.cat([h[0] for h in halves] + [h[1] for h in halves], dim=1) / k
    out["classifier.bias"] = sum(s["classifier.bias"] for s in states) / k
    merged.load_state_dict(out)
    return merged
