"""Attention over video-level features: what the tokens are, and the layers that attend over them.

YouTube-8M video-level inputs are one vector per modality. Self-attention over a single vector is
degenerate: softmax over one key is always 1, so "attention" collapses to two linear maps. To make the
paper's self- and cross-modal attention mean something, every hidden vector is read as a short
sequence of tokens: a modality's `hidden`-wide vector (the output of a fully connected layer) is split
into `tokens` equal chunks. Because the layer before the split is learned, each chunk is a learned
"view" of the modality, and attention decides per example how the views mix:

- self-attention: a modality's chunks attend to one another (softmax over `tokens` keys);
- cross-modal attention: audio chunks query visual chunks (the paper's X_v|a, eq. 6-7) and visual
  chunks query audio chunks (X_a|v, eq. 8-9), so the output depends on both modalities.

After attention the tokens are flattened back to a `hidden`-wide vector. When a chunk is narrower than
`attention_dim` it is projected up (and back down) by a Linear shared across tokens; at the paper's
configuration (hidden 2048, attention_dim 1024, 2 tokens) a chunk is exactly `attention_dim` wide and no
projection exists, which is what lets the parameter counts land on the paper's figures
(docs/MODELS.md). Each attention layer is a pre-LayerNorm transformer layer: multi-head attention with
a residual connection, then a position-wise feed-forward network (ffn_mult x wider) with a residual.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AttentionLayer(nn.Module):
    """One pre-LN transformer layer over tokens [B, N, dim]; with `cross=True` the queries come from
    `x` and the keys and values from `context` (another modality's tokens).

    A cross layer keeps no residual path from its queries: as in the paper's eq. 7 and 9, X_v|a is the
    visual values weighted by audio-query attention, not the audio features plus something (those are
    a stream of their own). Dropout acts on the sublayer outputs and inside the feed-forward part (the
    paper puts dropout on its fully connected layers); attention weights over a handful of tokens are
    not dropped.
    """

    def __init__(self, dim: int, num_heads: int, ffn_mult: int, dropout: float, cross: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.cross = cross
        self.norm_query = nn.LayerNorm(dim)
        # The context is another modality with its own statistics, so it gets its own normalisation.
        self.norm_context = nn.LayerNorm(dim) if cross else None
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_mult * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_mult * dim, dim)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if self.cross != (context is not None):
            raise ValueError("a cross-attention layer needs a context; a self-attention layer takes none")
        q_in = self.norm_query(x)
        kv_in = q_in if context is None else self.norm_context(context)
        b, n_q, dim = q_in.shape
        n_kv = kv_in.shape[1]
        h = self.num_heads
        q = self.query(q_in).view(b, n_q, h, dim // h).transpose(1, 2)
        k = self.key(kv_in).view(b, n_kv, h, dim // h).transpose(1, 2)
        v = self.value(kv_in).view(b, n_kv, h, dim // h).transpose(1, 2)
        att = self.drop(self.out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n_q, dim)))
        x = att if self.cross else x + att
        return x + self.drop(self.ffn(self.norm_ffn(x)))


class Tokenizer(nn.Module):
    """Splits a [B, hidden] vector into `tokens` chunks and maps each to `attention_dim` (and back)."""

    def __init__(self, hidden: int, tokens: int, attention_dim: int, merges: bool = True):
        super().__init__()
        self.tokens = tokens
        chunk = hidden // tokens
        same = chunk == attention_dim
        self.up = nn.Identity() if same else nn.Linear(chunk, attention_dim)
        # a context's tokens are only attended to, never turned back into a vector
        self.down = nn.Identity() if same or not merges else nn.Linear(attention_dim, chunk)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x.reshape(x.shape[0], self.tokens, -1))

    def merge(self, t: torch.Tensor) -> torch.Tensor:
        return self.down(t).reshape(t.shape[0], -1)


class SelfAttention(nn.Module):
    """`layers` self-attention layers over one modality's tokens: [B, hidden] -> [B, hidden]."""

    def __init__(self, hidden: int, tokens: int, attention_dim: int, num_heads: int, ffn_mult: int,
                 dropout: float, layers: int):
        super().__init__()
        self.tokenizer = Tokenizer(hidden, tokens, attention_dim)
        self.layers = nn.ModuleList(
            AttentionLayer(attention_dim, num_heads, ffn_mult, dropout) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(attention_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.tokenizer.split(x)
        for layer in self.layers:
            t = layer(t)
        return self.tokenizer.merge(self.norm(t))


class CrossModalAttention(nn.Module):
    """One cross-attention layer: the query modality's tokens attend to the context modality's tokens.
    Returns [B, hidden] features of the query modality guided by the context (e.g. X_v|a when the
    audio queries the visual tokens)."""

    def __init__(self, hidden: int, tokens: int, attention_dim: int, num_heads: int, ffn_mult: int,
                 dropout: float):
        super().__init__()
        self.query_tokenizer = Tokenizer(hidden, tokens, attention_dim)
        self.context_tokenizer = Tokenizer(hidden, tokens, attention_dim, merges=False)
        self.layer = AttentionLayer(attention_dim, num_heads, ffn_mult, dropout, cross=True)
        self.norm = nn.LayerNorm(attention_dim)

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        t = self.layer(self.query_tokenizer.split(query), self.context_tokenizer.split(context))
        return self.query_tokenizer.merge(self.norm(t))
