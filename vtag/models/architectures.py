"""The Attend-Fusion paper's networks (Awan et al., 2024), built from a `ModelConfig`.

Every model maps video-level features to class logits: `model(visual, audio) -> logits` with visual
[B, Dv] and audio [B, Da] (`mean`: 1024 + 128; `mean+std`: 2048 + 256). Logits, not probabilities:
training uses BCEWithLogits. Single-modality models take both arguments and ignore one.

Layouts follow the paper's text and figures (sections 3.1-3.2); where the text leaves a width or a
depth open, the choice is the natural one that puts the parameter count at the paper's configuration
within 3% of Tables 1-3 (worked out in docs/MODELS.md). Attention works on tokens made by splitting a
modality's hidden vector into chunks; why, and how, is in `vtag.models.attention`. The registry that
names them is `vtag.models.registry`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import torch
from torch import nn

from vtag.errors import VtagError
from vtag.io.records import INPUT_SPECS as INPUT_DIMS
from vtag.models.attention import CrossModalAttention, SelfAttention
from vtag.models.layers import GatedResidualFC, MixtureOfExperts, ResidualFC, fc, head
from vtag.models.memory import NeighbourMemory

if TYPE_CHECKING:  # annotations only: the registry builds on this module
    from vtag.models.registry import ModelConfig


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


class Ensemble(FusionModel):
    """`members` networks of one architecture, their logits averaged; then the memory, if any.
    Built from trained models by `ensemble_of` (`vtag ensemble`)."""

    def __init__(self, config: ModelConfig, build_member: Callable[[ModelConfig], FusionModel]):
        super().__init__(replace(config, input_norm=False))  # each member has its own input norm
        self.config = config
        single = replace(config, members=1, memory=None)
        self.members = nn.ModuleList(build_member(single) for _ in range(config.members))

    def network_logits(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(visual, audio) for member in self.members]).mean(0)


def network_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict without its neighbour memory's buffers."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith("memory.")}
