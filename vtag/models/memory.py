"""Neighbour memory: the labels of the training videos, looked up by feature similarity at inference.

With ~35k training videos for 3,862 classes a network underfits the near-duplicates YouTube-8M is full
of (the same channel, the same game, re-uploads): the labels of the most similar training videos add
what it cannot hold. A model with a memory blends its logits with a similarity-weighted vote of its
`k` nearest training videos, in logit space:

    logit = (1 - weight) * model_logit + weight * logit((votes + epsilon) / (1 + 2 * epsilon))

so everything downstream (sigmoid, metrics, top-k) is unchanged. Logit space rather than averaging
probabilities because a class the neighbours agree on should rise even where the network is unsure
(held-out GAP 0.736 against 0.733 for the best probability average); `epsilon` keeps a class no
neighbour has from being ruled out. While training the memory is skipped: it exists only in eval mode.

Each video is keyed by its L2-normalised visual and audio means (audio scaled by `audio_weight`),
centred and projected onto the top `dim` principal directions of the training keys, quantised to
`bits` (8, or 4 packed two to a byte) with a per-dimension scale. At a fixed size, more dimensions
at 4 bits find better neighbours than fewer at 8 (held-out GAP 0.7383 for 1,024 x 4 bits against
0.7365 for 512 x 8, both 17.7 MB for 34,659 videos). Neighbours are found by cosine similarity;
their votes are a softmax of similarity / `temperature`. Everything is a buffer in the model's state dict (no parameters), so it is
saved and loaded with the weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vtag.models.memory_checks import BITS, DEFAULTS, SHAPE_KEYS, check_settings, check_state
from vtag.models.packing import unpack_int4

__all__ = ["BITS", "DEFAULTS", "SHAPE_KEYS", "NeighbourMemory", "check_settings", "check_state", "joint_key"]

def joint_key(visual: torch.Tensor, audio: torch.Tensor, audio_weight: float) -> torch.Tensor:
    """A video's key before projection: its L2-normalised visual mean beside its L2-normalised audio
    mean x `audio_weight`."""
    return torch.cat([nn.functional.normalize(visual.float(), dim=-1),
                      audio_weight * nn.functional.normalize(audio.float(), dim=-1)], dim=-1)


class NeighbourMemory(nn.Module):
    def __init__(self, settings: dict[str, Any], num_classes: int, visual_dim: int):
        super().__init__()
        self.settings, self.num_classes, self.visual_dim = dict(settings), num_classes, visual_dim
        videos, dim, labels, input_dim, bits = (settings[key] for key in SHAPE_KEYS)
        self.register_buffer("mean", torch.zeros(input_dim))
        self.register_buffer("projection", torch.zeros(input_dim, dim))
        if bits == 8:
            self.register_buffer("keys", torch.zeros(videos, dim, dtype=torch.int8))
        else:  # two 4-bit values a byte, each stored + 8 (so 1..15), low nibble first
            self.register_buffer("keys", torch.zeros(videos, (dim + 1) // 2, dtype=torch.uint8))
        self.register_buffer("key_scale", torch.ones(dim))  # key ~ keys * key_scale (per dimension)
        self.register_buffer("key_norm", torch.ones(videos))
        self.register_buffer("label_offsets", torch.zeros(videos + 1, dtype=torch.int32))
        self.register_buffer("label_values", torch.zeros(labels, dtype=torch.int16))
        self._unit_keys: torch.Tensor | None = None
        self._unit_keys_stamp: tuple | None = None

    def unit_keys(self) -> torch.Tensor:
        """The stored keys dequantised and normalised, float32 [N, dim]: made once and kept (140 MB
        for 35k videos x 1,024 dims), because making them every call costs more than the lookup."""
        stamp = tuple((t.data_ptr(), t._version) for t in (self.keys, self.key_scale, self.key_norm))
        if self._unit_keys is None or stamp != self._unit_keys_stamp:
            with torch.no_grad():
                self._unit_keys = (self.quantised_keys().float() * self.key_scale) / self.key_norm[:, None]
            self._unit_keys_stamp = stamp
        return self._unit_keys

    def quantised_keys(self) -> torch.Tensor:
        """The stored keys as signed integers [N, dim] (unpacked when 4-bit)."""

        return self.keys if self.settings["bits"] == 8 else unpack_int4(self.keys, self.settings["dim"])

    def query(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Projected keys [B, dim] of the videos (not normalised)."""
        visual = visual[:, :self.visual_dim]  # the means: a mean+std model's first half
        audio = audio[:, :self.mean.shape[0] - self.visual_dim]
        return (joint_key(visual, audio, self.settings["audio_weight"]) - self.mean) @ self.projection

    def neighbours(self, visual: torch.Tensor, audio: torch.Tensor,
                   exclude: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(index [B, k] of the k nearest stored videos, their vote weights [B, k], float64).
        `exclude[i]` is a stored video that row i must not find: itself, when the stored videos are
        looked up (leave-one-out)."""
        with torch.autocast(device_type=visual.device.type, enabled=False):  # bf16 would blur the ranking
            query = nn.functional.normalize(self.query(visual, audio), dim=-1)
            similarity = query @ self.unit_keys().T
            if exclude is not None:
                similarity[torch.arange(len(similarity), device=similarity.device), exclude] = -torch.inf
            k = min(self.settings["k"], similarity.shape[1] - (exclude is not None))
            top, index = similarity.topk(k, dim=-1)
            return index, torch.softmax(top.double() / self.settings["temperature"], dim=-1)

    def votes(self, index: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Label votes [B, C] (float64): each neighbour's weight to each of its labels."""
        k = index.shape[1]
        starts = self.label_offsets[index].long()
        counts = (self.label_offsets[index + 1].long() - starts).flatten()
        scores = torch.zeros(len(index), self.num_classes, dtype=torch.float64, device=index.device)
        if int(counts.sum()):
            pair = torch.repeat_interleave(torch.arange(counts.numel(), device=index.device), counts)
            first = torch.cumsum(counts, 0) - counts  # where each pair's labels begin in `pair`
            position = starts.flatten()[pair] + torch.arange(len(pair), device=index.device) - first[pair]
            classes = self.label_values[position].long()
            scores.index_put_((pair // k, classes), weights.flatten()[pair].to(scores.dtype), accumulate=True)
        return scores

    def vote_logits(self, index: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """logit((votes + epsilon) / (1 + 2 epsilon)), float64 [B, C]."""
        epsilon = self.settings["epsilon"]
        votes = (self.votes(index, weights) + epsilon) / (1 + 2 * epsilon)
        return torch.log(votes) - torch.log1p(-votes)

    def neighbour_scores(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Similarity-weighted label votes [B, C] (float64) of the k nearest stored videos."""
        return self.votes(*self.neighbours(visual, audio))

    def blend(self, visual: torch.Tensor, audio: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The blended logits (float64: confident scores stay distinct)."""
        weight = self.settings["weight"]
        return (1 - weight) * logits.double() + weight * self.vote_logits(*self.neighbours(visual, audio))
