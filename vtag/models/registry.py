"""The Attend-Fusion paper's models in one registry: a name -> a builder, the paper's title, size and
parameter count; `ModelConfig` is the plain data every model is rebuilt from.

`create_model(name, **overrides)` gives a freshly initialised model; `build_model(config)` rebuilds one
from a saved config; `paper_table()` is what `vtag models` prints.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Callable

import torch
from torch import nn

from vtag.errors import VtagError
from vtag.models.architectures import (
    INPUT_DIMS, AttendFusion, AttentionLateFusion, CrossModalFusion, EarlyFusion, Ensemble, FCSingle, FusionModel,
    GatedLateFusion, LateFusion, ResidualAttentionEarlyFusion,
)
from vtag.models.memory import check_settings

PAPER_NUM_CLASSES = 4716  # the paper trains on the 2017 YouTube-8M vocabulary


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model; JSON-serialisable. `tokens` is how many chunks each
    modality's hidden vector is split into for attention; `ffn_mult` widens the attention layers'
    feed-forward part. Fully connected models ignore the attention fields."""

    name: str
    num_classes: int = 3862
    input_spec: str = "mean"
    hidden: int = 2048
    attention_dim: int = 1024
    num_heads: int = 8
    dropout: float = 0.4
    tokens: int = 2
    ffn_mult: int = 4
    input_norm: bool = False  # not from the paper: BatchNorm1d on each modality's input features
    experts: int = 0  # not from the paper: >0 swaps an early-fusion model's classifier for a mixture of experts
    memory: dict[str, Any] | None = None  # not from the paper: a neighbour memory's settings (vtag/memory.py)
    members: int = 1  # not from the paper: >1 is an ensemble of that many networks, logits averaged

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "model config") -> ModelConfig:
        if not isinstance(data, dict):
            raise VtagError(f"{source}: expected a JSON object with the model's settings, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise VtagError(f"{source}: unknown model setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        if "name" not in data:
            raise VtagError(f"{source}: the model config has no 'name' (a registry name, see `vtag models`)")
        config = cls(**data)
        config.validate(source)
        return config

    def validate(self, source: str = "model config") -> None:
        """Raises VtagError naming the bad setting; silent when the config can be built."""
        if self.name not in MODELS:
            raise VtagError(f"{source}: {unknown_model_message(self.name)}")
        if self.input_spec not in INPUT_DIMS:
            raise VtagError(f"{source}: input_spec '{self.input_spec}' is not one of {', '.join(INPUT_DIMS)}")
        for key in ("num_classes", "hidden", "attention_dim", "num_heads", "tokens", "ffn_mult"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise VtagError(f"{source}: {key} must be a positive integer, got {value!r}")
        if isinstance(self.members, bool) or not isinstance(self.members, int) or self.members < 1:
            raise VtagError(f"{source}: members must be a positive integer, got {self.members!r}")
        if not isinstance(self.input_norm, bool):
            raise VtagError(f"{source}: input_norm must be true or false, got {self.input_norm!r}")
        if isinstance(self.experts, bool) or not isinstance(self.experts, int) or self.experts < 0:
            raise VtagError(f"{source}: experts must be 0 (a linear classifier) or a positive integer, got {self.experts!r}")
        if self.experts and (MODELS[self.name].attention or not self.name.endswith("early-fusion")):
            raise VtagError(f"{source}: experts applies only to the fc-*-early-fusion models, not '{self.name}'")
        if self.memory is not None:
            check_settings(self.memory, source)
            if self.memory["input_dim"] != sum(INPUT_DIMS["mean"]):
                raise VtagError(f"{source}: memory input_dim must be {sum(INPUT_DIMS['mean'])} (the means), "
                                f"got {self.memory['input_dim']}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise VtagError(f"{source}: dropout must be in [0, 1), got {self.dropout!r}")
        if MODELS[self.name].attention:
            if self.hidden % self.tokens:
                raise VtagError(f"{source}: hidden {self.hidden} does not split into {self.tokens} tokens; pick a divisor")
            if self.attention_dim % self.num_heads:
                raise VtagError(f"{source}: attention_dim {self.attention_dim} is not divisible by num_heads {self.num_heads}")

    @property
    def input_dims(self) -> tuple[int, int]:
        return INPUT_DIMS[self.input_spec]


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


MODELS: dict[str, ModelSpec] = {
    "fc-audio": _spec(lambda c: FCSingle(c, "audio"), "FC Audio", 103, False),
    "fc-visual": _spec(lambda c: FCSingle(c, "visual"), "FC Visual", 110, False),
    "fc-early-fusion": _spec(lambda c: EarlyFusion(c, "fc", 1), "FC Early Fusion", 111, False),
    "fc-late-fusion": _spec(lambda c: LateFusion(c, "fc", 2), "FC Late Fusion", 341, False),
    "fc-residual-early-fusion": _spec(lambda c: EarlyFusion(c, "residual", 2), "FC Residual Early Fusion", 175, False),
    "fc-residual-late-fusion": _spec(lambda c: LateFusion(c, "residual", 2), "FC Residual Late Fusion", 341, False),
    "fc-residual-gated-early-fusion": _spec(lambda c: EarlyFusion(c, "gated", 1), "FC Residual Gated Early Fusion", 175, False),
    "fc-residual-gated-late-fusion": _spec(GatedLateFusion, "FC Residual Gated Late Fusion", 416, False),
    "fc-attention": _spec(lambda c: AttentionLateFusion(c, "fc"), "FC Attention", 83),
    "residual-attention-early-fusion": _spec(ResidualAttentionEarlyFusion, "Residual Attention Early Fusion", 79),
    "residual-attention-late-fusion": _spec(lambda c: AttentionLateFusion(c, "residual"), "Residual Attention Late Fusion", 83),
    "attend-fusion": _spec(AttendFusion, "Attend-Fusion", 72),
    "audio-visual-attention": _spec(lambda c: CrossModalFusion(c, "fc", refine=False), "Audio-Visual Attention Network", 113),
    "self-cross-modal-attention": _spec(lambda c: CrossModalFusion(c, "fc", refine=True), "Self and Cross Modal Attention Network", 172),
    "self-attended-cross-modal-fcrn": _spec(lambda c: CrossModalFusion(c, "residual", refine=True), "Self-Attended Cross-Modal FCRN Network", 172),
    "attend-fusion-audio-only": _spec(lambda c: AttendFusion(c, ("audio",)), "Attend-Fusion: Audio Only", 35),
    "attend-fusion-visual-only": _spec(lambda c: AttendFusion(c, ("visual",)), "Attend-Fusion: Visual Only", 37),
    "attend-fusion-no-attention": _spec(lambda c: AttendFusion(c, attention=False), "Attend-Fusion: No Attention", 22),
}


def unknown_model_message(name: str) -> str:
    close = difflib.get_close_matches(str(name), list(MODELS), n=3, cutoff=0.4)
    hint = f"did you mean {', '.join(close)}?" if close else "see `vtag models` for the list"
    return f"unknown model '{name}': {hint}"


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
