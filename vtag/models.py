"""The Attend-Fusion paper's models (Awan et al., 2024) in one registry, with config + safetensors I/O.

Every model maps video-level features to class logits: `model(visual, audio) -> logits` with visual
[B, Dv] and audio [B, Da] (`mean`: 1024 + 128; `mean+std`: 2048 + 256). Logits, not probabilities:
training uses BCEWithLogits. Single-modality models take both arguments and ignore one.

Layouts follow the paper's text and figures (sections 3.1-3.2); where the text leaves a width or a
depth open, the choice is the natural one that puts the parameter count at the paper's configuration
within 3% of Tables 1-3 (worked out in docs/MODELS.md). Attention works on tokens made by splitting a
modality's hidden vector into chunks; why, and how, is in `vtag.attention`.

Building blocks (W = config.hidden):
- FC layer: Linear -> ReLU -> Dropout.
- Residual FC layer (eq. 1): y = x + F(x), F one FC layer.
- Gated residual FC layer (eq. 2-3): g = sigmoid(W_g x + b_g); y = g * F(x) + (1 - g) * x.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from vtag.attention import CrossModalAttention, SelfAttention
from vtag.errors import VtagError
from vtag.fileio import atomic_write_bytes

INPUT_DIMS = {"mean": (1024, 128), "mean+std": (2048, 256)}  # (visual, audio)
PAPER_NUM_CLASSES = 4716  # the paper trains on the 2017 YouTube-8M vocabulary
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT = "vtag-model"


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
            raise VtagError(f"{source}: {_unknown_name_message(self.name)}")
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
            from vtag.memory import check_settings

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


# ---- building blocks -----------------------------------------------------------------------------

def fc(in_dim: int, out_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU(), nn.Dropout(dropout))


class ResidualFC(nn.Module):
    """y = x + F(x) (paper eq. 1) with F one FC layer."""

    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.f = fc(width, width, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.f(x)


class GatedResidualFC(nn.Module):
    """Context-gated residual layer (paper eq. 2-3): the gate decides, per feature, how much of the
    transformed features replaces the input."""

    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.f = fc(width, width, dropout)
        self.gate = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.gate(x))
        return g * self.f(x) + (1 - g) * x


class MixtureOfExperts(nn.Module):
    """Not from the paper: the YouTube-8M starter code's video-level classifier. Per class, a softmax
    gate weighs `experts` logistic experts, p = sum_k g_k sigmoid(e_k). Returns logit(p), computed in
    log space so that training can stay on BCEWithLogits. The experts are named so that
    `init_classifier_bias` starts each at the label prior (and with it the mixture)."""

    def __init__(self, in_dim: int, num_classes: int, experts: int):
        super().__init__()
        self.num_classes, self.num_experts = num_classes, experts
        self.experts = nn.ModuleList(nn.Linear(in_dim, num_classes) for _ in range(experts))
        self.gate = nn.Linear(in_dim, num_classes * experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_g = torch.log_softmax(self.gate(x).view(*x.shape[:-1], self.num_classes, self.num_experts), dim=-1)
        e = torch.stack([expert(x) for expert in self.experts], dim=-1)
        log_p = torch.logsumexp(log_g + nn.functional.logsigmoid(e), dim=-1)
        log_not_p = torch.logsumexp(log_g + nn.functional.logsigmoid(-e), dim=-1)
        return log_p - log_not_p


def head(in_dim: int, config: ModelConfig, fc_layers: int) -> nn.Sequential:
    """`fc_layers` FC layers of width `hidden`, then the classification layer."""
    layers: list[nn.Module] = []
    for i in range(fc_layers):
        layers.append(fc(in_dim if i == 0 else config.hidden, config.hidden, config.dropout))
    layers.append(nn.Linear(config.hidden if fc_layers else in_dim, config.num_classes))
    return nn.Sequential(*layers)


class FusionModel(nn.Module):
    """Base: `encode` returns named feature streams; `classify` turns them into logits (by default the
    classifier over their concatenation, in stream order)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        if config.input_norm:  # the features are PCA'd and quantised, not unit-scaled per dimension
            dv, da = config.input_dims
            self.input_norm = nn.ModuleDict({"visual": nn.BatchNorm1d(dv), "audio": nn.BatchNorm1d(da)})
        if config.memory is not None:
            from vtag.memory import NeighbourMemory

            self.memory = NeighbourMemory(config.memory, config.num_classes, INPUT_DIMS["mean"][0])

    def encode(self, visual: torch.Tensor, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def classify(self, streams: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.classifier(torch.cat(list(streams.values()), dim=-1))

    def network_logits(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        dv, da = self.config.input_dims
        if visual.ndim != 2 or visual.shape[-1] != dv or audio.ndim != 2 or audio.shape[-1] != da:
            raise VtagError(
                f"model '{self.config.name}' ({self.config.input_spec} inputs) expects visual [B, {dv}] and audio "
                f"[B, {da}], got {list(visual.shape)} and {list(audio.shape)}: check the input spec"
            )
        if self.config.input_norm:
            visual, audio = self.input_norm["visual"](visual), self.input_norm["audio"](audio)
        return self.classify(self.encode(visual, audio))

    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        logits = self.network_logits(visual, audio)
        if self.config.memory is not None and not self.training:
            logits = self.memory.blend(visual, audio, logits)
        return logits


# ---- baselines (section 3.1, Fig. 2) -------------------------------------------------------------

def _stack(in_dim: int, config: ModelConfig, kind: str, depth: int) -> nn.Sequential:
    """An input FC layer to width `hidden`, then `depth` layers of `kind` (fc | residual | gated)."""
    w, p = config.hidden, config.dropout
    make = {"fc": lambda: fc(w, w, p), "residual": lambda: ResidualFC(w, p), "gated": lambda: GatedResidualFC(w, p)}[kind]
    return nn.Sequential(fc(in_dim, w, p), *(make() for _ in range(depth)))


class FCSingle(FusionModel):
    """FC Audio / FC Visual (Fig. 2a,b): three FC layers on one modality."""

    def __init__(self, config: ModelConfig, modality: str):
        super().__init__(config)
        self.modality = modality
        dv, da = config.input_dims
        self.body = _stack(da if modality == "audio" else dv, config, "fc", 1)
        self.classifier = nn.Linear(config.hidden, config.num_classes)

    def encode(self, visual, audio):
        return {self.modality: self.body(audio if self.modality == "audio" else visual)}


class EarlyFusion(FusionModel):
    """FC / FCRN / FCRGN early fusion (Fig. 2c,e,g): concatenated inputs through one stack."""

    def __init__(self, config: ModelConfig, kind: str, depth: int):
        super().__init__(config)
        self.body = _stack(sum(config.input_dims), config, kind, depth)
        self.classifier = (MixtureOfExperts(config.hidden, config.num_classes, config.experts) if config.experts
                           else nn.Linear(config.hidden, config.num_classes))

    def encode(self, visual, audio):
        return {"fused": self.body(torch.cat([visual, audio], dim=-1))}


class LateFusion(FusionModel):
    """FC / FCRN late fusion (Fig. 2d,f): one stack per modality, concatenated, then classified."""

    def __init__(self, config: ModelConfig, kind: str, depth: int):
        super().__init__(config)
        dv, da = config.input_dims
        self.visual_branch = _stack(dv, config, kind, depth)
        self.audio_branch = _stack(da, config, kind, depth)
        self.classifier = nn.Linear(2 * config.hidden, config.num_classes)

    def encode(self, visual, audio):
        return {"visual": self.visual_branch(visual), "audio": self.audio_branch(audio)}


class GatedLateFusion(LateFusion):
    """FCRGN late fusion (Fig. 2h): gated branches, and the fusion itself gated the same way (eq. 3):
    each modality gets its own classifier and a gate computed from both modalities weighs them per
    class, logits = g * visual_logits + (1 - g) * audio_logits."""

    def __init__(self, config: ModelConfig):
        super().__init__(config, "gated", 1)
        del self.classifier
        self.visual_classifier = nn.Linear(config.hidden, config.num_classes)
        self.audio_classifier = nn.Linear(config.hidden, config.num_classes)
        self.fusion_gate = nn.Linear(2 * config.hidden, config.num_classes)

    def classify(self, streams):
        g = torch.sigmoid(self.fusion_gate(torch.cat([streams["visual"], streams["audio"]], dim=-1)))
        return g * self.visual_classifier(streams["visual"]) + (1 - g) * self.audio_classifier(streams["audio"])


# ---- proposed models (section 3.2, Fig. 3) -------------------------------------------------------

def _self_attention(config: ModelConfig, layers: int) -> SelfAttention:
    c = config
    return SelfAttention(c.hidden, c.tokens, c.attention_dim, c.num_heads, c.ffn_mult, c.dropout, layers)


def _cross_attention(config: ModelConfig) -> CrossModalAttention:
    c = config
    return CrossModalAttention(c.hidden, c.tokens, c.attention_dim, c.num_heads, c.ffn_mult, c.dropout)


def _attention_branch(in_dim: int, config: ModelConfig, kind: str | None, layers: int = 2) -> nn.Sequential:
    """Input FC layer, optionally one more FC (`fc`) or residual FC (`residual`) layer, then `layers`
    self-attention layers over the modality's tokens (none: no attention)."""
    parts: list[nn.Module] = [fc(in_dim, config.hidden, config.dropout)]
    if kind == "fc":
        parts.append(fc(config.hidden, config.hidden, config.dropout))
    elif kind == "residual":
        parts.append(ResidualFC(config.hidden, config.dropout))
    if layers:
        parts.append(_self_attention(config, layers))
    return nn.Sequential(*parts)


def _refinement(config: ModelConfig, kind: str) -> nn.Sequential:
    """An FC (or residual FC) layer and two self-attention layers on an already hidden-wide stream."""
    layer = fc(config.hidden, config.hidden, config.dropout) if kind == "fc" else ResidualFC(config.hidden, config.dropout)
    return nn.Sequential(layer, _self_attention(config, 2))


class AttendFusion(FusionModel):
    """Attend-Fusion (Fig. 3d) and its ablations: each modality through an attention network (FC layer
    + two self-attention layers), late fusion by concatenation, classification layer. The ablations
    drop a modality or the attention (leaving only the FC layers)."""

    def __init__(self, config: ModelConfig, modalities: tuple[str, ...] = ("visual", "audio"), attention: bool = True):
        super().__init__(config)
        self.modalities = modalities
        dv, da = config.input_dims
        layers = 2 if attention else 0
        self.branches = nn.ModuleDict(
            {m: _attention_branch(dv if m == "visual" else da, config, None, layers) for m in modalities}
        )
        self.classifier = nn.Linear(len(modalities) * config.hidden, config.num_classes)

    def encode(self, visual, audio):
        inputs = {"visual": visual, "audio": audio}
        return {m: self.branches[m](inputs[m]) for m in self.modalities}


class AttentionLateFusion(FusionModel):
    """FC Attention (Fig. 3a) and Residual Attention Late Fusion (Fig. 3c): per modality an FC layer,
    a second FC (or residual FC) layer and two self-attention layers; the attended features are
    concatenated and go through two FC layers and the classification layer."""

    def __init__(self, config: ModelConfig, kind: str):
        super().__init__(config)
        dv, da = config.input_dims
        self.visual_branch = _attention_branch(dv, config, kind)
        self.audio_branch = _attention_branch(da, config, kind)
        self.classifier = head(2 * config.hidden, config, fc_layers=2)

    def encode(self, visual, audio):
        return {"visual": self.visual_branch(visual), "audio": self.audio_branch(audio)}


class ResidualAttentionEarlyFusion(FusionModel):
    """Residual Attention Early Fusion (Fig. 3b): concatenated inputs, FC layer, then twice (residual
    FC layer + two self-attention layers), two FC layers and the classification layer."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        stages: list[nn.Module] = [fc(sum(config.input_dims), config.hidden, config.dropout)]
        for _ in range(2):
            stages += [ResidualFC(config.hidden, config.dropout), _self_attention(config, 2)]
        self.body = nn.Sequential(*stages)
        self.classifier = head(config.hidden, config, fc_layers=2)

    def encode(self, visual, audio):
        return {"fused": self.body(torch.cat([visual, audio], dim=-1))}


class CrossModalFusion(FusionModel):
    """Audio-Visual Attention Network (Fig. 3e), Self and Cross Modal Attention Network (Fig. 3f) and
    Self-Attended Cross-Modal FCRN (Fig. 3g).

    Each modality is self-attended (FC, FC or residual FC, two self-attention layers), giving X_v and
    X_a. Cross-modal attention (eq. 6-9) then computes X_v|a (audio tokens query visual tokens) and
    X_a|v (visual tokens query audio tokens). With `refine`, each cross-modal stream goes through a
    further FC (or residual FC) layer and two self-attention layers (Fig. 3f,g). The four streams are
    concatenated (X_v, X_a, X_v|a, X_a|v) and go through one FC layer and the classification layer.
    """

    def __init__(self, config: ModelConfig, kind: str, refine: bool):
        super().__init__(config)
        dv, da = config.input_dims
        self.visual_branch = _attention_branch(dv, config, kind)
        self.audio_branch = _attention_branch(da, config, kind)
        self.audio_queries_visual = _cross_attention(config)
        self.visual_queries_audio = _cross_attention(config)
        self.refine = nn.ModuleDict(
            {s: _refinement(config, kind) for s in ("visual|audio", "audio|visual")}
        ) if refine else None
        self.classifier = head(4 * config.hidden, config, fc_layers=1)

    def encode(self, visual, audio):
        x_v, x_a = self.visual_branch(visual), self.audio_branch(audio)
        streams = {
            "visual": x_v,
            "audio": x_a,
            "visual|audio": self.audio_queries_visual(x_a, x_v),
            "audio|visual": self.visual_queries_audio(x_v, x_a),
        }
        if self.refine is not None:
            for key, block in self.refine.items():
                streams[key] = block(streams[key])
        return streams



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


def _unknown_name_message(name: str) -> str:
    close = difflib.get_close_matches(str(name), list(MODELS), n=3, cutoff=0.4)
    hint = f"did you mean {', '.join(close)}?" if close else "see `vtag models` for the list"
    return f"unknown model '{name}': {hint}"


def _spec_for(name: str) -> ModelSpec:
    if name not in MODELS:
        raise VtagError(_unknown_name_message(name))
    return MODELS[name]


def paper_config(name: str) -> ModelConfig:
    """The paper's configuration (section 4.1): mean inputs, 4,716 classes, FC width 8,000 for the
    baselines and 2,048 for the proposed models, attention dim 1,024, dropout 0.4. The paper gives no
    head count; 8 heads of 128."""
    spec = _spec_for(name)
    return ModelConfig(name=name, num_classes=PAPER_NUM_CLASSES, input_spec="mean", hidden=spec.paper_hidden,
                       attention_dim=1024, num_heads=8, dropout=0.4, tokens=2, ffn_mult=4)


class Ensemble(FusionModel):
    """`members` networks of one architecture, their logits averaged; then the memory, if any.
    Built from trained models by `ensemble_of` (`vtag ensemble`)."""

    def __init__(self, config: ModelConfig):
        super().__init__(replace(config, input_norm=False))  # each member has its own input norm
        self.config = config
        single = replace(config, members=1, memory=None)
        self.members = nn.ModuleList(MODELS[config.name].build(single) for _ in range(config.members))

    def network_logits(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(visual, audio) for member in self.members]).mean(0)


def network_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict without its neighbour memory's buffers."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith("memory.")}


def build_model(config: ModelConfig) -> FusionModel:
    config.validate()
    return Ensemble(config) if config.members > 1 else MODELS[config.name].build(config)


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


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' where a GPU is visible, else 'cpu'; anything else is checked, so a missing GPU
    or a typo is a one-line error instead of a CUDA traceback."""
    name = str(device)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not (name == "cpu" or name == "cuda" or name.startswith("cuda:")):
        raise VtagError(f"unknown device '{name}': use auto, cpu or cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VtagError(f"--device {name} asked for, but no CUDA GPU is available here: use --device cpu")
    return name


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


# ---- save / load ---------------------------------------------------------------------------------

def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP (`.module`) or torch.compile (`._orig_mod`) wrappers."""
    while not hasattr(model, "config"):
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            raise VtagError("save_model needs a vtag model (one with a .config); build it with create_model")
        model = inner
    return model


_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
           "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


INT8_SCALE = ".int8_scale"
INT4_SCALE = ".int4_scale"
INT4_GROUP = 64  # weights sharing one scale along a row: per-row 4-bit scales lose too much


def _is_weight_matrix(key: str, value: torch.Tensor) -> bool:
    # the big Linear weights; the memory's int8 keys and small tensors keep their own precision
    return value.is_floating_point() and value.ndim == 2 and value.numel() >= 4096 and not key.startswith("memory.")


def pack_int4(values: torch.Tensor) -> torch.Tensor:
    """Integers in [-7, 7], [N, D] -> uint8 [N, ceil(D / 2)]: two a byte, each + 8 (so 1..15), low
    nibble first; an odd last column is padded with a zero."""
    stored = (values + 8).to(torch.uint8)
    if stored.shape[1] % 2:
        stored = torch.cat([stored, torch.full((len(stored), 1), 8, dtype=torch.uint8)], dim=1)
    return stored[:, 0::2] | (stored[:, 1::2] << 4)


def unpack_int4(packed: torch.Tensor, columns: int) -> torch.Tensor:
    """`pack_int4` undone: int8 [N, columns]."""
    low, high = (packed & 0xF).to(torch.int8) - 8, (packed >> 4).to(torch.int8) - 8
    return torch.stack([low, high], dim=-1).flatten(1)[:, :columns]


def _int4(value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the weights at 4 bits, packed by `pack_int4`; a float16 scale per group of 64 along a row)."""
    rows, cols = value.shape
    groups = value.float().view(rows, cols // INT4_GROUP, INT4_GROUP)
    scale = (groups.abs().amax(-1, keepdim=True).clamp_min(1e-12) / 7).half()
    return pack_int4(torch.round(groups / scale.float()).clamp(-7, 7).view(rows, cols)), scale.squeeze(-1)


def _from_int4(packed: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    values = unpack_int4(packed, 2 * packed.shape[1]).float()
    rows, cols = values.shape
    return (values.view(rows, cols // INT4_GROUP, INT4_GROUP) * scale.float()[..., None]).view(rows, cols)


def _dequantise(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        if key.endswith((INT8_SCALE, INT4_SCALE)):
            continue
        if key + INT8_SCALE in state:
            out[key] = value.float() * state[key + INT8_SCALE].float()[:, None]
        elif key + INT4_SCALE in state:
            out[key] = _from_int4(value, state[key + INT4_SCALE])
        else:
            out[key] = value.float() if value.is_floating_point() else value
    return out


def save_model(model: nn.Module, directory: str | Path, extra: dict | None = None,
               dtype: str | torch.dtype = torch.float32) -> Path:
    """Writes `model.safetensors` and `config.json` (settings under "model", plus `extra`, e.g. the
    vocabulary and metrics) into `directory`, each atomically. `dtype` float16 halves the file; weights
    load back as float32. Returns the directory."""
    from safetensors.torch import save

    model = _unwrap(model)
    quantised = dtype if dtype in ("int8", "int4") else None
    if quantised:
        dtype = torch.float16  # for what is not a weight matrix
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise VtagError(f"unknown weight dtype '{dtype}': use one of {', '.join(_DTYPES)}, int8 or int4")
        dtype = _DTYPES[dtype]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        if quantised == "int4" and _is_weight_matrix(key, value) and value.shape[1] % INT4_GROUP == 0:
            tensors[key], tensors[key + INT4_SCALE] = _int4(value)
        elif quantised and _is_weight_matrix(key, value):
            scale = value.float().abs().amax(dim=1).clamp_min(1e-12) / 127
            tensors[key] = torch.round(value.float() / scale[:, None]).clamp(-127, 127).to(torch.int8)
            tensors[key + INT8_SCALE] = scale
        else:
            tensors[key] = (value.to(dtype) if value.is_floating_point() else value).contiguous()
    meta = dict(extra or {})
    if "model" in meta:
        raise VtagError("save_model: 'model' in extra would overwrite the model's settings; rename that key")
    meta = {"format": FORMAT, "name": model.config.name, "model": model.config.to_dict(),
            "weights_dtype": quantised or str(dtype).removeprefix("torch."), **meta}
    atomic_write_bytes(directory / WEIGHTS_FILE, save(tensors, metadata={"format": "pt"}))
    atomic_write_bytes(directory / CONFIG_FILE, (json.dumps(meta, indent=2, sort_keys=False) + "\n").encode())
    return directory


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[FusionModel, dict]:
    """Rebuilds a model from a folder written by `save_model` (or its config.json or model.safetensors)
    and loads its weights strictly, as float32. Returns (model, the whole config.json)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    directory = path if path.is_dir() else path.parent
    if not path.is_dir() and path.name not in (CONFIG_FILE, WEIGHTS_FILE):
        raise VtagError(f"{path}: not a model folder, config.json or model.safetensors")
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not config_path.is_file():
        raise VtagError(f"{config_path}: missing; a model folder holds config.json and model.safetensors (written by `vtag train`)")
    try:
        meta = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VtagError(f"{config_path}: not readable JSON ({exc}); restore it from the run that wrote it") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("model"), dict):
        raise VtagError(f"{config_path}: no \"model\" settings object; is this a vtag model's config.json?")
    config = ModelConfig.from_dict(meta["model"], source=str(config_path))
    if not weights_path.is_file():
        raise VtagError(f"{weights_path}: missing; copy the weights beside config.json")
    try:
        state = load_file(weights_path, device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise VtagError(f"{weights_path}: not a readable safetensors file ({exc}); the file is corrupt or truncated") from None
    model = build_model(config)
    state = _dequantise(state)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        raise VtagError(f"{weights_path}: weights do not match the model in {config_path.name} ({detail[:300]})") from None
    return model.to(map_location), meta


def ensemble_folder(models: list[str | Path], out: str | Path, dtype: str = "float32") -> tuple[Path, int]:
    """`vtag ensemble`: loads trained models (folders or run names), writes their ensemble into
    `out`. Returns (out, number of members)."""
    from vtag.classify import resolve_model_dir

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
