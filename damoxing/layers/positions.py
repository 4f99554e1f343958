"""Positional encodings: sinusoidal (Vaswani et al. 2017), learned absolute, rotary (Su et al. 2021), and T5's
relative position buckets (Raffel et al. 2020)."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_table(length: int, dim: int, base: float = 10000.0, layout: str = "interleaved") -> torch.Tensor:
    """PE[pos, 2i] = sin(pos / base^(2i/dim)), PE[pos, 2i+1] = cos(pos / base^(2i/dim)).  (length, dim)

    layout "halves" puts the sines in the first half of the channels and the cosines in the second, as
    tensor2tensor, fairseq and Marian do: the same features in another channel order.
    """
    if layout not in ("interleaved", "halves"):
        raise ValueError(f"layout must be 'interleaved' or 'halves', got {layout!r}")
    pos = torch.arange(length, dtype=torch.float64)[:, None]  # (L, 1)
    inv = torch.exp(-math.log(base) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (dim/2,)
    table = torch.zeros(length, dim, dtype=torch.float64)
    sines, cosines = (
        (table[:, 0::2], table[:, 1::2])
        if layout == "interleaved"
        else (table[:, : (dim + 1) // 2], table[:, (dim + 1) // 2 :])
    )
    sines.copy_(torch.sin(pos * inv))
    cosines.copy_(torch.cos(pos * inv[: dim // 2]))
    return table.float()


class SinusoidalPositions(nn.Module):
    """Fixed table added to token embeddings; not a parameter, not saved in checkpoints."""

    def __init__(self, max_positions: int, dim: int, layout: str = "interleaved"):
        super().__init__()
        self.register_buffer("table", sinusoidal_table(max_positions, dim, layout=layout), persistent=False)

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, C)
        return self.table[position_ids]


class LearnedPositions(nn.Embedding):
    """One trained vector per absolute position (BERT, GPT-2)."""

    def __init__(self, max_positions: int, dim: int):
        super().__init__(max_positions, dim)


class RotaryEmbedding(nn.Module):
    """RoPE: rotates query/key channel pairs (i, i + d/2) by angle pos * base^(-2i/d) (the "rotate half" layout)."""

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        self.head_dim = head_dim
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) positions -> cos, sin of shape (B, 1, T, head_dim), ready to broadcast over heads."""
        angles = position_ids[..., None].float() * self.inv_freq  # (B, T, d/2)
        angles = torch.cat([angles, angles], dim=-1)  # (B, T, d)
        return angles.cos()[:, None], angles.sin()[:, None]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, H, T, d). Returns x rotated: x * cos + rotate_half(x) * sin."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


def relative_bucket(relative: torch.Tensor, bidirectional: bool, buckets: int, max_distance: int) -> torch.Tensor:
    """T5's bucket of each (key - query) distance: exact below buckets / 2 (per direction), log-spaced up to
    `max_distance`, one bucket beyond. Causal (not bidirectional): keys after the query share bucket 0."""
    bucket = torch.zeros_like(relative)
    if bidirectional:
        buckets //= 2
        bucket += (relative > 0).long() * buckets  # keys after the query use the upper half
        distance = relative.abs()
    else:
        distance = (-relative).clamp(min=0)
    exact = buckets // 2
    log_spaced = (
        exact + (torch.log(distance.float() / exact) / math.log(max_distance / exact) * (buckets - exact)).long()
    )  # float32 as in T5, so every bucket matches
    return bucket + torch.where(distance < exact, distance, log_spaced.clamp(max=buckets - 1))


class RelativePositionBias(nn.Module):
    """One learned scalar per head and distance bucket, added to the attention scores (T5).

    Computed once per stack and shared by all its blocks. forward(T, S, offset) -> (1, H, T, S), where the
    T queries sit at positions offset .. offset + T - 1 and the S keys at 0 .. S - 1 (incremental decoding).
    """

    def __init__(self, heads: int, buckets: int = 32, max_distance: int = 128, bidirectional: bool = True):
        super().__init__()
        self.buckets, self.max_distance, self.bidirectional = buckets, max_distance, bidirectional
        self.embed = nn.Embedding(buckets, heads)

    def forward(self, q_len: int, k_len: int, offset: int = 0) -> torch.Tensor:
        device = self.embed.weight.device
        queries = torch.arange(offset, offset + q_len, device=device)[:, None]
        keys = torch.arange(k_len, device=device)[None, :]
        bucket = relative_bucket(keys - queries, self.bidirectional, self.buckets, self.max_distance)  # (T, S)
        return self.embed(bucket).permute(2, 0, 1)[None]  # (1, H, T, S)
