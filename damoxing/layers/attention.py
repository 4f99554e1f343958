"""Multi-head attention on scaled_dot_product_attention, with grouped-query heads and a key/value cache.

Masks are boolean and broadcastable to (B, H, Tq, Tk); True means "may attend".
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .positions import apply_rotary


class LayerKV:
    """Keys and values seen so far by one attention layer during incremental decoding."""

    def __init__(self):
        self.k: torch.Tensor | None = None  # (B, Hkv, S, d)
        self.v: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return 0 if self.k is None else self.k.shape[2]

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.k is None:
            self.k, self.v = k, v
        else:
            self.k, self.v = torch.cat([self.k, k], dim=2), torch.cat([self.v, v], dim=2)
        return self.k, self.v

    def select(self, index: torch.Tensor) -> None:
        """Keep batch rows `index` (beam search reorders and prunes hypotheses)."""
        if self.k is not None:
            self.k, self.v = self.k[index], self.v[index]


class KVCache(list):
    """One LayerKV per block; `length` is the number of positions already cached."""

    def __init__(self, layers: int):
        super().__init__(LayerKV() for _ in range(layers))

    @property
    def length(self) -> int:
        return self[0].length

    def select(self, index: torch.Tensor) -> None:
        for layer in self:
            layer.select(index)


def causal_mask(q_len: int, k_len: int, device=None) -> torch.Tensor:
    """(Tq, Tk) lower-triangular mask; queries are the last q_len of k_len positions."""
    return torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(k_len - q_len)


class MultiHeadAttention(nn.Module):
    """Self- or cross-attention. `kv_heads < heads` gives grouped-query attention.

    Set `record_probs = True` to keep the attention probabilities of the last call in `.probs`
    (for visualisation); the default path stays on the fused SDPA kernel.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        kv_heads: int | None = None,
        causal: bool = False,
        bias: bool = True,
        dropout: float = 0.0,
        kv_dim: int | None = None,
        head_dim: int | None = None,
        scale: float | None = None,  # scores * scale; None: 1 / sqrt(head_dim) (T5 folds it into its init: 1.0)
    ):
        super().__init__()
        kv_heads = kv_heads or heads
        if heads % kv_heads:
            raise ValueError(f"heads ({heads}) must be a multiple of kv_heads ({kv_heads})")
        self.heads, self.kv_heads, self.causal, self.dropout = heads, kv_heads, causal, dropout
        self.head_dim = head_dim or dim // heads
        self.scale = scale
        kv_dim = kv_dim or dim
        self.q = nn.Linear(dim, heads * self.head_dim, bias=bias)
        self.k = nn.Linear(kv_dim, kv_heads * self.head_dim, bias=bias)
        self.v = nn.Linear(kv_dim, kv_heads * self.head_dim, bias=bias)
        self.o = nn.Linear(heads * self.head_dim, dim, bias=bias)
        self.record_probs = False
        self.probs: torch.Tensor | None = None

    def forward(
        self,
        x: torch.Tensor,  # (B, T, C)
        context: torch.Tensor | None = None,  # (B, S, C') for cross-attention
        mask: torch.Tensor | None = None,  # bool, broadcastable to (B, H, T, S)
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,  # cos, sin: (B, 1, T, d)
        cache: LayerKV | None = None,
        position_bias: torch.Tensor | None = None,  # (1 | B, H, T, S) added to the scores (T5's relative positions)
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,  # keys, values from `project_kv`, computed once
    ) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.heads, self.head_dim).transpose(1, 2)  # (B, H, T, d)
        k, v = kv if kv is not None else self.project_kv(x if context is None else context)  # (B, Hkv, S, d)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        if cache is not None:
            k, v = cache.update(k, v)  # (B, Hkv, S_total, d)
        if self.kv_heads != self.heads:
            k = k.repeat_interleave(self.heads // self.kv_heads, dim=1)  # (B, H, S, d)
            v = v.repeat_interleave(self.heads // self.kv_heads, dim=1)

        S = k.shape[2]
        is_causal = False
        if self.causal and T > 1:
            if mask is None and position_bias is None and T == S:
                is_causal = True  # fast path: the kernel applies the triangle itself
            else:
                tri = causal_mask(T, S, x.device)
                mask = tri if mask is None else mask & tri
        if mask is not None:
            mask = mask | ~mask.any(-1, keepdim=True)  # a row with nothing to attend (padding) attends everywhere
        if position_bias is not None:  # additive scores; masked places get -inf
            bias = position_bias.to(q.dtype)
            mask = bias if mask is None else bias.masked_fill(~mask, float("-inf"))
        p = self.dropout if self.training else 0.0

        if self.record_probs:
            out = self._attend_recording(q, k, v, mask, is_causal, p)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=is_causal,
                                                 scale=self.scale)
        return self.o(out.transpose(1, 2).reshape(B, T, self.heads * self.head_dim))  # (B, T, C)

    def project_kv(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S, C') -> keys, values (B, Hkv, S, d). Cross-attention computes them once per source."""
        B, S, _ = src.shape
        k = self.k(src).view(B, S, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(src).view(B, S, self.kv_heads, self.head_dim).transpose(1, 2)
        return k, v

    def _attend_recording(self, q, k, v, mask, is_causal, p):
        scores = (q @ k.transpose(-2, -1)) * (self.head_dim**-0.5 if self.scale is None else self.scale)  # (B, H, T, S)
        if is_causal:
            mask = causal_mask(q.shape[2], k.shape[2], q.device)
        if mask is not None and mask.dtype != torch.bool:
            scores = scores + mask  # a position bias, with -inf where masked
        elif mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        probs = scores.float().softmax(-1).to(q.dtype)
        self.probs = probs.detach()
        return F.dropout(probs, p) @ v
