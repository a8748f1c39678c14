"""The Attend-Fusion paper's models in one registry: a name -> a builder, the paper's title, size and
parameter count; `ModelConfig` is the plain data every model is rebuilt from.

`create_model(name, **overrides)` gives a freshly initialised model; `build_model(config)` rebuilds one
from a saved config; `paper_table()` is what `vtag models` prints.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Callable

import torch
from torch import nn

from vtag.errors import VtagError
from vtag.models.architectures import (
    INPUT_DIMS, AttendFusion, AttentionLateFusion, CrossModalFusion, EarlyFusion, Ensemble, FCSingle, FusionModel,
    GatedLateFusion, LateFusion, ResidualAttentionEarlyFusion,
)
from vtag.models.config import MODEL_FACTS, ModelConfig, unknown_model_message

__all__ = ["MODELS", "ModelConfig", "ModelSpec", "build_model", "count_parameters", "create_model", "paper_config",
           "paper_table", "unknown_model_message"]

PAPER_NUM_CLASSES = 4716  # the paper trains on the 2017 YouTube-8M vocabulary


# ---- registry ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelSpec:
    build: Callable[[ModelConfig], FusionModel]
    title: str  # the paper's name for the model
    paper_params_m: float  # the paper's parameter count, millions (Tables 1-3)
    attention: bool  # proposed (attention-era) model: paper width 2048, attention fields used
    paper_hidden: int

    @property
    def paper_params(self) -> int:
        return round(self.paper_params_m * 1e6)


def _spec(build, title, params_m, attention=True):
    return ModelSpec(build, title, params_m, attention, 2048 if attention else 8000)


_BUILDERS: dict[str, Callable[[ModelConfig], FusionModel]] = {
    "fc-audio": lambda c: FCSingle(c, "audio"),
    "fc-visual": lambda c: FCSingle(c, "visual"),
    "fc-early-fusion": lambda c: EarlyFusion(c, "fc", 1),
    "fc-late-fusion": lambda c: LateFusion(c, "fc", 2),
    "fc-residual-early-fusion": lambda c: EarlyFusion(c, "residual", 2),
    "fc-residual-late-fusion": lambda c: LateFusion(c, "residual", 2),
    "fc-residual-gated-early-fusion": lambda c: EarlyFusion(c, "gated", 1),
    "fc-residual-gated-late-fusion": GatedLateFusion,
    "fc-attention": lambda c: AttentionLateFusion(c, "fc"),
    "residual-attention-early-fusion": ResidualAttentionEarlyFusion,
    "residual-attention-late-fusion": lambda c: AttentionLateFusion(c, "residual"),
    "attend-fusion": AttendFusion,
    "audio-visual-attention": lambda c: CrossModalFusion(c, "fc", refine=False),
    "self-cross-modal-attention": lambda c: CrossModalFusion(c, "fc", refine=True),
    "self-attended-cross-modal-fcrn": lambda c: CrossModalFusion(c, "residual", refine=True),
    "attend-fusion-audio-only": lambda c: AttendFusion(c, ("audio",)),
    "attend-fusion-visual-only": lambda c: AttendFusion(c, ("visual",)),
    "attend-fusion-no-attention": lambda c: AttendFusion(c, attention=False),
}
MODELS: dict[str, ModelSpec] = {name: _spec(_BUILDERS[name], title, params_m, attention)
                                for name, (title, params_m, attention) in MODEL_FACTS.items()}


def _spec_for(name: str) -> ModelSpec:
    if name not in MODELS:
        raise VtagError(unknown_model_message(name))
    return MODELS[name]


def paper_config(name: str) -> ModelConfig:
    """The paper's configuration (section 4.1): mean inputs, 4,716 classes, FC width 8,000 for the
    baselines and 2,048 for the proposed models, attention dim 1,024, dropout 0.4. The paper gives no
    head count; 8 heads of 128."""
    spec = _spec_for(name)
    return ModelConfig(name=name, num_classes=PAPER_NUM_CLASSES, input_spec="mean", hidden=spec.paper_hidden,
                       attention_dim=1024, num_heads=8, dropout=0.4, tokens=2, ffn_mult=4)


def build_model(config: ModelConfig) -> FusionModel:
    config.validate()
    build = MODELS[config.name].build
    return Ensemble(config, build) if config.members > 1 else build(config)


def create_model(name: str, num_classes: int = 3862, input_spec: str = "mean", **overrides: Any) -> FusionModel:
    """A freshly initialised model: the paper's configuration of `name` with the given vocabulary size,
    input spec and any ModelConfig field overridden (e.g. hidden=64)."""
    base = paper_config(name)
    known = {f.name for f in fields(ModelConfig)} - {"name"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise VtagError(f"unknown model setting(s) {', '.join(unknown)} for '{name}'; known: {', '.join(sorted(known))}")
    return build_model(replace(base, num_classes=num_classes, input_spec=input_spec, **overrides))


def count_parameters(model_or_config: str | ModelConfig | nn.Module) -> int:
    """Parameter count; names and configs are built on the meta device, so nothing is allocated."""
    if isinstance(model_or_config, nn.Module):
        return sum(p.numel() for p in model_or_config.parameters())
    config = paper_config(model_or_config) if isinstance(model_or_config, str) else model_or_config
    with torch.device("meta"):
        model = build_model(config)
    return sum(p.numel() for p in model.parameters())


def paper_table(input_spec: str = "mean") -> list[dict[str, Any]]:
    """Every registered model at the paper's configuration (with `input_spec` inputs): its name, the
    paper's title, the parameter count measured here, the paper's figure and the difference in %."""
    if input_spec not in INPUT_DIMS:
        raise VtagError(f"input spec '{input_spec}' is not one of {', '.join(INPUT_DIMS)}")
    rows = []
    for name, spec in MODELS.items():
        params = count_parameters(replace(paper_config(name), input_spec=input_spec))
        rows.append({"name": name, "title": spec.title, "params": params, "paper_params": spec.paper_params,
                     "difference_pct": round(100 * (params - spec.paper_params) / spec.paper_params, 2),
                     "hidden": spec.paper_hidden, "input_spec": input_spec})
    return rows
