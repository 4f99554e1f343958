"""BERT-family encoder: embeddings -> N post-norm blocks -> pooler -> head.

Heads: 'none' (features), 'mlm', 'pretraining' (MLM + next-sentence), 'sequence', 'token'.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from ..config import check, check_choice, check_positive, check_range
from ..layers import (
    MLP,
    LearnedPositions,
    MaskedLMHead,
    MultiHeadAttention,
    NoHead,
    PostNormBlock,
    PretrainingHead,
    RotaryEmbedding,
    SequenceHead,
    SinusoidalPositions,
    TokenHead,
    padding_mask,
    pool,
)
from ..layers.dropout import Dropout
from ..layers.mlp import ACTIVATIONS
from .base import ModelBase, check_layer_heads, init_weights

ENCODER_HEADS = ("none", "mlm", "pretraining", "sequence", "token")
POOLER_ACTIVATIONS = {"tanh": torch.tanh, **ACTIVATIONS}


@dataclass(frozen=True)
class EncoderConfig:
    vocab_size: int = 30522
    dim: int = 768
    layers: int = 12
    heads: int = 12
    layer_heads: tuple[int, ...] = ()  # heads each layer keeps after head pruning; () = `heads` in every layer
    mlp_dim: int = 3072
    max_positions: int = 512
    type_vocab_size: int = 2
    position: str = "learned"  # learned | sinusoidal | rope
    rope_base: float = 10000.0
    activation: str = "gelu"
    norm_eps: float = 1e-12
    dropout: float = 0.1
    attention_dropout: float = 0.1
    pad_id: int = 0
    pooler: bool = True  # BERT's dense + tanh layer over [CLS]
    pooler_activation: str = "tanh"  # tanh (BERT) | the activations: RoFormer's classification head uses gelu
    pooling: str = "pooler"  # pooler | cls | mean: what sequence heads see
    head: str = "none"
    num_labels: int = 2
    classifier_dropout: float = 0.1
    init_std: float = 0.02

    def __post_init__(self):
        for key in ("vocab_size", "dim", "layers", "heads", "mlp_dim", "max_positions", "num_labels"):
            check_positive(f"model.{key}", getattr(self, key))
        check(self.dim % self.heads == 0, "model.dim", f"{self.dim} must be divisible by model.heads ({self.heads}).")
        check_layer_heads(self.layer_heads, self.layers, self.heads)
        check_choice("model.position", self.position, ("learned", "sinusoidal", "rope"))
        check_choice("model.activation", self.activation, tuple(ACTIVATIONS))
        check_choice("model.pooling", self.pooling, ("pooler", "cls", "mean"))
        check_choice("model.pooler_activation", self.pooler_activation, tuple(POOLER_ACTIVATIONS))
        check(self.pooling != "pooler" or self.pooler, "model.pooling", "'pooler' needs model.pooler: true.")
        check_choice("model.head", self.head, ENCODER_HEADS)
        for key in ("dropout", "attention_dropout", "classifier_dropout"):
            check_range(f"model.{key}", getattr(self, key), 0.0, 1.0)


class Embeddings(nn.Module):
    """token + position + segment embeddings -> LayerNorm -> dropout."""

    def __init__(self, c: EncoderConfig):
        super().__init__()
        self.tokens = nn.Embedding(c.vocab_size, c.dim, padding_idx=c.pad_id)
        if c.position == "learned":
            self.positions = LearnedPositions(c.max_positions, c.dim)
        elif c.position == "sinusoidal":
            self.positions = SinusoidalPositions(c.max_positions, c.dim)
        else:
            self.positions = None  # rotary: applied inside attention
        self.segments = nn.Embedding(c.type_vocab_size, c.dim) if c.type_vocab_size else None
        self.norm = nn.LayerNorm(c.dim, eps=c.norm_eps)
        self.dropout = Dropout(c.dropout)

    def forward(self, input_ids, token_type_ids, position_ids) -> torch.Tensor:
        x = self.tokens(input_ids)  # (B, T, C)
        if self.positions is not None:
            x = x + self.positions(position_ids)
        if self.segments is not None:
            segs = token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)
            x = x + self.segments(segs)
        return self.dropout(self.norm(x))


class Encoder(ModelBase):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        c = self.config = config
        self.embed = Embeddings(c)
        self.rope = RotaryEmbedding(c.dim // c.heads, c.rope_base) if c.position == "rope" else None
        self.blocks = nn.ModuleList(
            PostNormBlock(
                attn=MultiHeadAttention(c.dim, heads, dropout=c.attention_dropout, head_dim=c.dim // c.heads),
                mlp=MLP(c.dim, c.mlp_dim, c.activation, dropout=c.dropout),
                norm1=nn.LayerNorm(c.dim, eps=c.norm_eps),
                norm2=nn.LayerNorm(c.dim, eps=c.norm_eps),
                dropout=c.dropout,
            )
            for heads in (c.layer_heads or (c.heads,) * c.layers)
        )
        self.pooler = nn.Linear(c.dim, c.dim) if c.pooler else None
        self.head = self.make_head(c.head, c.num_labels)
        init_weights(self, c.init_std)
        self.tie_weights()

    def reset_head(self, num_outputs: int, kind: str = "sequence") -> None:
        """A fresh head. A sequence head on a body without a pooler (a masked-LM checkpoint) also gets a fresh
        pooler, and [CLS] pooling becomes pooler pooling: what BertForSequenceClassification reads and saves."""
        if kind == "sequence" and self.pooler is None:
            like = self.embed.tokens.weight
            self.pooler = nn.Linear(self.config.dim, self.config.dim).to(like.device, like.dtype)
            init_weights(self.pooler, self.config.init_std)
            pooling = "pooler" if self.config.pooling == "cls" else self.config.pooling
            self.config = dataclasses.replace(self.config, pooler=True, pooling=pooling)
        super().reset_head(num_outputs, kind)

    def make_head(self, kind: str, num_outputs: int) -> nn.Module:
        c = self.config
        check_choice("model.head", kind, ENCODER_HEADS)
        if kind == "mlm":
            return MaskedLMHead(c.dim, c.vocab_size, c.activation, c.norm_eps)
        if kind == "pretraining":
            return PretrainingHead(c.dim, c.vocab_size, c.activation, c.norm_eps)
        if kind == "sequence":
            return SequenceHead(c.dim, num_outputs, c.classifier_dropout)
        if kind == "token":
            return TokenHead(c.dim, num_outputs, c.classifier_dropout)
        return NoHead()

    def tie_weights(self) -> None:
        mlm = getattr(self.head, "mlm", self.head)
        if isinstance(mlm, MaskedLMHead):
            mlm.decoder.weight = self.embed.tokens.weight

    def forward_features(
        self,
        input_ids: torch.Tensor,  # (B, T)
        attention_mask: torch.Tensor | None = None,  # (B, T) 1 = token, 0 = padding; or bool (B, 1, T, T) (packing)
        token_type_ids: torch.Tensor | None = None,  # (B, T) segment A = 0, B = 1
        position_ids: torch.Tensor | None = None,  # (B, T)
    ) -> torch.Tensor:
        B, T = input_ids.shape
        if position_ids is None:
            position_ids = torch.arange(T, device=input_ids.device).expand(B, T)
        x = self.embed(input_ids, token_type_ids, position_ids)  # (B, T, C)
        rope = self.rope(position_ids) if self.rope is not None else None
        mask = attention_mask  # None, or a (B, 1, T, T) block-diagonal mask of packed examples
        if attention_mask is not None and attention_mask.dim() == 2:
            mask = padding_mask(attention_mask)  # (B, 1, 1, T)
        for block in self.blocks:
            x = block(x, mask=mask, rope=rope)  # (B, T, C)
        return x

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, C) -> (B, C) as chosen by config.pooling."""
        pooled = pool(hidden, attention_mask, self.config.pooling)
        if self.config.pooling != "pooler":
            return pooled
        return POOLER_ACTIVATIONS[self.config.pooler_activation](self.pooler(pooled))  # (B, C)

    def forward_head(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None):
        return self.head(hidden, self.pool(hidden, attention_mask))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None):
        hidden = self.forward_features(input_ids, attention_mask, token_type_ids, position_ids)
        return self.forward_head(hidden, attention_mask)
