"""Transformer blocks assembled from injected attention, feed-forward and norm modules.

PreNormBlock (GPT-2, Llama):  x + attn(norm1(x)),  x + mlp(norm2(x))
    `queries=n` computes the first n positions only (all positions still serve as keys and values): what a
    ViT's last block needs when its head reads the class token alone. The same values, a fraction of the work.
PostNormBlock (BERT, the original Transformer): norm1(x + attn(x)),  norm2(x + mlp(x))
An optional cross-attention sub-layer (encoder-decoder models) sits between the two; it reads the encoder
output (`context`) or, when decoding step by step, its keys and values computed once (`context_kv`).
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import LayerKV, MultiHeadAttention
from .dropout import Dropout


class _Block(nn.Module):
    def __init__(
        self,
        attn: MultiHeadAttention,
        mlp: nn.Module,
        norm1: nn.Module,
        norm2: nn.Module,
        dropout: float = 0.0,
        cross_attn: MultiHeadAttention | None = None,
        norm_cross: nn.Module | None = None,
    ):
        super().__init__()
        self.norm1, self.attn = norm1, attn
        self.norm_cross, self.cross_attn = norm_cross, cross_attn
        self.norm2, self.mlp = norm2, mlp
        self.dropout = Dropout(dropout)


class PreNormBlock(_Block):
    def forward(
        self,
        x: torch.Tensor,  # (B, T, C)
        mask: torch.Tensor | None = None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: LayerKV | None = None,
        context: torch.Tensor | None = None,  # (B, S, C) encoder output
        context_mask: torch.Tensor | None = None,
        position_bias: torch.Tensor | None = None,  # (1 | B, H, T, S) added to the self-attention scores
        context_kv: tuple[torch.Tensor, torch.Tensor] | None = None,  # the cross-attention keys, values
        queries: int | None = None,  # compute positions [0, queries) only; None: all
    ) -> torch.Tensor:
        h = self.norm1(x)
        if queries is None:
            attended = self.attn(h, mask=mask, rope=rope, cache=cache, position_bias=position_bias)
        else:  # the first positions ask, every position answers: non-causal self-attention without positions
            if rope is not None or cache is not None or position_bias is not None or self.attn.causal:
                raise ValueError("queries= needs non-causal attention without rope, a cache or a position bias")
            x, attended = x[:, :queries], self.attn(h[:, :queries], context=h, mask=mask)  # (B, queries, C)
        x = x + self.dropout(attended)
        if self.cross_attn is not None:
            x = x + self.dropout(self.cross_attn(self.norm_cross(x), context=context, mask=context_mask, kv=context_kv))
        return x + self.mlp(self.norm2(x))


class PostNormBlock(_Block):
    def forward(
        self,
        x: torch.Tensor,  # (B, T, C)
        mask: torch.Tensor | None = None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: LayerKV | None = None,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        position_bias: torch.Tensor | None = None,
        context_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.attn(x, mask=mask, rope=rope, cache=cache, position_bias=position_bias)))
        if self.cross_attn is not None:
            x = self.norm_cross(x + self.dropout(self.cross_attn(x, context=context, mask=context_mask, kv=context_kv)))
        return self.norm2(x + self.mlp(x))
