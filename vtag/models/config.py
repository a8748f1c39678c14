"""`ModelConfig`, the plain data every model is rebuilt from, and the plain facts of the registry's
models (title, paper size, whether attention): everything a config needs to be checked, without
PyTorch, so that the NumPy runtime (vtag.models.numpy_runtime) can read a model's config without it.
The builders that turn a config into a network are in vtag.models.registry."""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, fields
from typing import Any

from vtag.errors import VtagError
from vtag.io.records import INPUT_SPECS as INPUT_DIMS
from vtag.models.memory_checks import check_settings

# name -> (the paper's title, its parameter count in millions (Tables 1-3), attention-era model)
MODEL_FACTS: dict[str, tuple[str, float, bool]] = {
    "fc-audio": ("FC Audio", 103, False),
    "fc-visual": ("FC Visual", 110, False),
    "fc-early-fusion": ("FC Early Fusion", 111, False),
    "fc-late-fusion": ("FC Late Fusion", 341, False),
    "fc-residual-early-fusion": ("FC Residual Early Fusion", 175, False),
    "fc-residual-late-fusion": ("FC Residual Late Fusion", 341, False),
    "fc-residual-gated-early-fusion": ("FC Residual Gated Early Fusion", 175, False),
    "fc-residual-gated-late-fusion": ("FC Residual Gated Late Fusion", 416, False),
    "fc-attention": ("FC Attention", 83, True),
    "residual-attention-early-fusion": ("Residual Attention Early Fusion", 79, True),
    "residual-attention-late-fusion": ("Residual Attention Late Fusion", 83, True),
    "attend-fusion": ("Attend-Fusion", 72, True),
    "audio-visual-attention": ("Audio-Visual Attention Network", 113, True),
    "self-cross-modal-attention": ("Self and Cross Modal Attention Network", 172, True),
    "self-attended-cross-modal-fcrn": ("Self-Attended Cross-Modal FCRN Network", 172, True),
    "attend-fusion-audio-only": ("Attend-Fusion: Audio Only", 35, True),
    "attend-fusion-visual-only": ("Attend-Fusion: Visual Only", 37, True),
    "attend-fusion-no-attention": ("Attend-Fusion: No Attention", 22, True),
}


def unknown_model_message(name: str) -> str:
    close = difflib.get_close_matches(str(name), list(MODEL_FACTS), n=3, cutoff=0.4)
    hint = f"did you mean {', '.join(close)}?" if close else "see `vtag models` for the list"
    return f"unknown model '{name}': {hint}"


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
        if self.name not in MODEL_FACTS:
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
        if self.experts and (MODEL_FACTS[self.name][2] or not self.name.endswith("early-fusion")):
            raise VtagError(f"{source}: experts applies only to the fc-*-early-fusion models, not '{self.name}'")
        if self.memory is not None:
            check_settings(self.memory, source)
            if self.memory["input_dim"] != sum(INPUT_DIMS["mean"]):
                raise VtagError(f"{source}: memory input_dim must be {sum(INPUT_DIMS['mean'])} (the means), "
                                f"got {self.memory['input_dim']}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise VtagError(f"{source}: dropout must be in [0, 1), got {self.dropout!r}")
        if MODEL_FACTS[self.name][2]:
            if self.hidden % self.tokens:
                raise VtagError(f"{source}: hidden {self.hidden} does not split into {self.tokens} tokens; pick a divisor")
            if self.attention_dim % self.num_heads:
                raise VtagError(f"{source}: attention_dim {self.attention_dim} is not divisible by num_heads {self.num_heads}")

    @property
    def input_dims(self) -> tuple[int, int]:
        return INPUT_DIMS[self.input_spec]
