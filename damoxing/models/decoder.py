"""GPT-family decoder: token (+ position) embeddings -> N pre-norm causal blocks -> norm -> head.

One file covers GPT-2 style (learned positions, LayerNorm, GELU MLP, tied embeddings) and Llama style
(RoPE, RMSNorm, SwiGLU, grouped-query attention) through the config.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import check, check_choice, check_positive, check_range
from ..layers import (
    MLP,
    KVCache,
    LearnedPositions,
    LMHead,
    MultiHeadAttention,
    NoHead,
    PreNormBlock,
    RotaryEmbedding,
    SequenceHead,
    SinusoidalPositions,
    SwiGLU,
    TokenHead,
    combine_masks,
    document_mask,
    make_norm,
    padding_mask,
    pool,
)
from ..layers.dropout import Dropout
from ..layers.mlp import ACTIVATIONS
from .base import ModelBase, check_layer_heads, init_weights

DECODER_HEADS = ("lm", "sequence", "token", "none")


@dataclass(frozen=True)
class DecoderConfig:
    vocab_size: int = 50257
    dim: int = 768
    layers: int = 12
    heads: int = 12
    layer_heads: tuple[int, ...] = ()  # heads each layer keeps after head pruning; () = `heads` in every layer
    kv_heads: int | None = None  # fewer than heads: grouped-query attention
    head_dim: int | None = None  # default dim // heads
    mlp_dim: int = 3072
    max_positions: int = 1024
    position: str = "learned"  # learned | sinusoidal | rope
    rope_base: float = 10000.0
    norm: str = "layernorm"  # layernorm | rmsnorm
    norm_eps: float = 1e-5
    mlp: str = "gelu"  # gelu (two-layer MLP with `activation`) | swiglu
    activation: str = "gelu_tanh"
    attention_bias: bool = True
    mlp_bias: bool = True
    tie_embeddings: bool = True
    dropout: float = 0.0
    attention_dropout: float = 0.0
    bos_id: int | None = None
    eos_id: int | None = None
    pad_id: int | None = None
    head: str = "lm"
    num_labels: int = 2
    pooling: str = "last"  # last | mean: what sequence heads see
    classifier_dropout: float = 0.0
    init_std: float = 0.02

    def __post_init__(self):
        for key in ("vocab_size", "dim", "layers", "heads", "mlp_dim", "max_positions", "num_labels"):
            check_positive(f"model.{key}", getattr(self, key))
        kv = self.kv_heads or self.heads
        check(self.heads % kv == 0, "model.kv_heads", f"{kv} must divide model.heads ({self.heads}).")
        check_layer_heads(self.layer_heads, self.layers, self.heads)
        check(
            not self.layer_heads or kv == self.heads,
            "model.layer_heads",
            "per-layer head counts need one key/value head per query head (kv_heads unset).",
        )
        check(
            self.head_dim is not None or self.dim % self.heads == 0,
            "model.dim",
            f"{self.dim} must be divisible by model.heads ({self.heads}), or set model.head_dim.",
        )
        check_choice("model.position", self.position, ("learned", "sinusoidal", "rope"))
        check_choice("model.norm", self.norm, ("layernorm", "rmsnorm"))
        check_choice("model.mlp", self.mlp, ("gelu", "swiglu"))
        check_choice("model.activation", self.activation, tuple(ACTIVATIONS))
        check_choice("model.head", self.head, DECODER_HEADS)
        check_choice("model.pooling", self.pooling, ("last", "mean"))
        for key in ("dropout", "attention_dropout", "classifier_dropout"):
            check_range(f"model.{key}", getattr(self, key), 0.0, 1.0)


class Decoder(ModelBase):
    def __init__(self, config: DecoderConfig):
        super().__init__()
        c = self.config = config
        head_dim = c.head_dim or c.dim // c.heads
        self.embed = nn.Embedding(c.vocab_size, c.dim)
        if c.position == "learned":
            self.positions = LearnedPositions(c.max_positions, c.dim)
        elif c.position == "sinusoidal":
            self.positions = SinusoidalPositions(c.max_positions, c.dim)
        else:
            self.positions = None
        self.rope = RotaryEmbedding(head_dim, c.rope_base) if c.position == "rope" else None
        self.dropout = Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            PreNormBlock(
                attn=MultiHeadAttention(
                    c.dim,
                    heads,
                    c.kv_heads if not c.layer_heads else None,
                    causal=True,
                    bias=c.attention_bias,
                    dropout=c.attention_dropout,
                    head_dim=head_dim,
                ),
                mlp=(
                    SwiGLU(c.dim, c.mlp_dim, c.mlp_bias, c.dropout)
                    if c.mlp == "swiglu"
                    else MLP(c.dim, c.mlp_dim, c.activation, c.mlp_bias, c.dropout)
                ),
                norm1=make_norm(c.norm, c.dim, c.norm_eps),
                norm2=make_norm(c.norm, c.dim, c.norm_eps),
                dropout=c.dropout,
            )
            for heads in (c.layer_heads or (c.heads,) * c.layers)
        )
        self.norm = make_norm(c.norm, c.dim, c.norm_eps)
        self.head = self.make_head(c.head, c.num_labels)
        init_weights(self, c.init_std, residual_layers=c.layers)
        self.tie_weights()

    def make_head(self, kind: str, num_outputs: int) -> nn.Module:
        c = self.config
        check_choice("model.head", kind, DECODER_HEADS)
        if kind == "lm":
            return LMHead(c.dim, c.vocab_size)
        if kind == "sequence":
            return SequenceHead(c.dim, num_outputs, c.classifier_dropout, bias=False)
        if kind == "token":
            return TokenHead(c.dim, num_outputs, c.classifier_dropout)
        return NoHead()

    def tie_weights(self) -> None:
        if self.config.tie_embeddings and isinstance(self.head, LMHead):
            self.head.proj.weight = self.embed.weight

    def new_cache(self) -> KVCache:
        return KVCache(self.config.layers)

    def forward_features(
        self,
        input_ids: torch.Tensor,  # (B, T)
        attention_mask: torch.Tensor | None = None,  # (B, S) over cached + new positions, 1 = token
        position_ids: torch.Tensor | None = None,  # (B, T); restart at 0 per packed document
        document_ids: torch.Tensor | None = None,  # (B, T) packed-document index: block-diagonal attention
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        B, T = input_ids.shape
        start = cache.length if cache is not None else 0
        if position_ids is None:
            position_ids = torch.arange(start, start + T, device=input_ids.device).expand(B, T)
        x = self.embed(input_ids)  # (B, T, C)
        if self.positions is not None:
            x = x + self.positions(position_ids)
        x = self.dropout(x)
        rope = self.rope(position_ids) if self.rope is not None else None  # cos, sin: (B, 1, T, d)
        mask = combine_masks(
            padding_mask(attention_mask) if attention_mask is not None else None,  # (B, 1, 1, S)
            document_mask(document_ids) if document_ids is not None else None,  # (B, 1, T, T)
        )
        for i, block in enumerate(self.blocks):
            x = block(x, mask=mask, rope=rope, cache=cache[i] if cache is not None else None)  # (B, T, C)
        return self.norm(x)

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, C) -> (B, C) as chosen by config.pooling (the mask may also cover cached positions)."""
        mask = attention_mask[:, -hidden.shape[1] :] if attention_mask is not None else None
        return pool(hidden, mask, self.config.pooling)

    def forward_head(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(self.head, (LMHead, TokenHead, NoHead)):
            return self.head(hidden)  # (B, T, V | labels | C)
        return self.head(hidden, self.pool(hidden, attention_mask))  # (B, labels)

    def forward(self, input_ids, attention_mask=None, position_ids=None, document_ids=None, cache=None):
        hidden = self.forward_features(input_ids, attention_mask, position_ids, document_ids, cache)
        return self.forward_head(hidden, attention_mask)
