"""Positional encodings: sinusoidal (Vaswani et al. 2017), learned absolute, rotary (Su et al. 2021)."""
from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_table(length: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """PE[pos, 2i] = sin(pos / base^(2i/dim)), PE[pos, 2i+1] = cos(pos / base^(2i/dim)).  (length, dim)"""
    pos = torch.arange(length, dtype=torch.float64)[:, None]  # (L, 1)
    inv = torch.exp(-math.log(base) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (dim/2,)
    table = torch.zeros(length, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * inv)
    table[:, 1::2] = torch.cos(pos * inv[: dim // 2])
    return table.float()


class SinusoidalPositions(nn.Module):
    """Fixed table added to token embeddings; not a parameter, not saved in checkpoints."""

    def __init__(self, max_positions: int, dim: int):
        super().__init__()
        self.register_buffer("table", sinusoidal_table(max_positions, dim), persistent=False)

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
