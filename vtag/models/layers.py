"""Building blocks of the paper's networks (W = config.hidden):
- FC layer: Linear -> ReLU -> Dropout.
- Residual FC layer (eq. 1): y = x + F(x), F one FC layer.
- Gated residual FC layer (eq. 2-3): g = sigmoid(W_g x + b_g); y = g * F(x) + (1 - g) * x.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:  # annotations only: the config module builds on this one
    from vtag.models.registry import ModelConfig


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
