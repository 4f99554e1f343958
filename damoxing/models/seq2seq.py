"""Encoder-decoder Transformer: the original Transformer (Vaswani et al. 2017), T5 and Marian in one file.

    source (B, S) -> embed -> encoder blocks -> memory (B, S, C)                          forward_features
    target (B, T) -> embed -> decoder blocks (causal self-attention, then cross-attention
                     to the memory) -> (B, T, C)                                          decode
    (B, T, C) -> head -> (B, T, V) logits                                                 forward_head

One token embedding serves the encoder, the decoder and (tied) the output projection. The styles are
config values; the presets in models/__init__.py name them:

    transformer  sinusoidal positions, post-norm LayerNorm, ReLU, embeddings * sqrt(dim)
    marian       the same with SiLU ("swish") and a bias on the output logits (MarianMTModel)
    t5           relative position buckets, pre-norm RMSNorm, no biases, unscaled attention scores;
                 v1.0: ReLU and a tied output scaled by dim ** -0.5; v1.1: gated GELU, untied output

Step-by-step decoding: `new_cache(memory, memory_mask)` projects the encoder output into every
cross-attention layer's keys and values once per source; each `decode(..., cache=cache)` call then only
adds the new positions' self-attention keys and values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..config import check, check_choice, check_positive, check_range
from ..errors import ConfigError
from ..layers import (
    MLP,
    GatedMLP,
    KVCache,
    LMHead,
    MultiHeadAttention,
    NoHead,
    PostNormBlock,
    PreNormBlock,
    RelativePositionBias,
    SinusoidalPositions,
    make_norm,
    padding_mask,
    pool,
)
from ..layers.dropout import Dropout
from ..layers.mlp import ACTIVATIONS
from .base import ModelBase, init_weights

SEQ2SEQ_HEADS = ("lm", "none")


@dataclass(frozen=True)
class Seq2SeqConfig:
    vocab_size: int = 32000
    dim: int = 512
    layers: int = 6  # encoder blocks
    decoder_layers: int | None = None  # decoder blocks; default: as many as the encoder
    heads: int = 8
    head_dim: int | None = None  # default dim // heads (T5 v1.1 small: 6 heads of 64 on dim 512)
    mlp_dim: int = 2048
    max_positions: int = 1024  # sinusoidal positions: the longest source or target
    position: str = "sinusoidal"  # sinusoidal | relative (T5's buckets)
    relative_buckets: int = 32
    relative_max_distance: int = 128
    norm: str = "layernorm"  # layernorm | rmsnorm
    norm_position: str = "post"  # post: norm(x + f(x)) | pre: x + f(norm(x)), and a final norm after each stack
    norm_eps: float = 1e-5
    mlp: str = "mlp"  # mlp: fc2(act(fc1 x)) | gated: down(act(gate x) * up x)
    activation: str = "relu"
    bias: bool = True  # biases in the attention and MLP projections
    scale_attention: bool = True  # scores / sqrt(head_dim); T5 folds that into its initialisation
    scale_embeddings: bool = True  # token embeddings * sqrt(dim)
    tie_embeddings: bool = True  # the output projection is the token embedding
    scale_output: bool = False  # decoder output * dim ** -0.5 before the projection (T5 v1.0)
    logits_bias: bool = False  # a bias per vocabulary entry on the logits (Marian)
    dropout: float = 0.1
    attention_dropout: float = 0.0
    pad_id: int = 0
    eos_id: int = 1
    decoder_start_id: int = 0  # the first decoder input (T5 and Marian: the pad token)
    head: str = "lm"  # lm | none (decoder hidden states)
    num_labels: int = 2  # unused by the lm head; kept for the shared head surface
    pooling: str = "mean"  # what `pool` gives a sequence head: the mean of the encoder output
    init_std: float = 0.02

    def __post_init__(self):
        for key in (
            "vocab_size",
            "dim",
            "layers",
            "heads",
            "mlp_dim",
            "max_positions",
            "relative_buckets",
            "relative_max_distance",
            "num_labels",
        ):
            check_positive(f"model.{key}", getattr(self, key))
        if self.decoder_layers is not None:
            check_positive("model.decoder_layers", self.decoder_layers)
        check(
            self.head_dim is not None or self.dim % self.heads == 0,
            "model.dim",
            f"{self.dim} must be divisible by model.heads ({self.heads}), or set model.head_dim.",
        )
        check_choice("model.position", self.position, ("sinusoidal", "relative"))
        check_choice("model.norm", self.norm, ("layernorm", "rmsnorm"))
        check_choice("model.norm_position", self.norm_position, ("post", "pre"))
        check_choice("model.mlp", self.mlp, ("mlp", "gated"))
        check_choice("model.activation", self.activation, tuple(ACTIVATIONS))
        check_choice("model.head", self.head, SEQ2SEQ_HEADS)
        check_choice("model.pooling", self.pooling, ("mean", "cls"))
        for key in ("dropout", "attention_dropout"):
            check_range(f"model.{key}", getattr(self, key), 0.0, 1.0)
        for key in ("pad_id", "eos_id", "decoder_start_id"):
            check(
                0 <= getattr(self, key) < self.vocab_size,
                f"model.{key}",
                f"{getattr(self, key)} is not a token id of a vocabulary of {self.vocab_size}.",
            )

    @property
    def num_decoder_layers(self) -> int:
        return self.decoder_layers or self.layers


class Stack(nn.Module):
    """One side of the model: positions, blocks and (pre-norm) a final norm. Seq2Seq runs it."""

    def __init__(self, c: Seq2SeqConfig, layers: int, decoder: bool):
        super().__init__()
        self.positions = (
            SinusoidalPositions(c.max_positions, c.dim, layout="halves") if c.position == "sinusoidal" else None
        )
        self.relative = (
            RelativePositionBias(c.heads, c.relative_buckets, c.relative_max_distance, bidirectional=not decoder)
            if c.position == "relative"
            else None
        )
        block = PreNormBlock if c.norm_position == "pre" else PostNormBlock
        self.blocks = nn.ModuleList(
            block(
                attn=_attention(c, causal=decoder),
                mlp=_mlp(c),
                norm1=make_norm(c.norm, c.dim, c.norm_eps),
                norm2=make_norm(c.norm, c.dim, c.norm_eps),
                dropout=c.dropout,
                cross_attn=_attention(c) if decoder else None,
                norm_cross=make_norm(c.norm, c.dim, c.norm_eps) if decoder else None,
            )
            for _ in range(layers)
        )
        self.norm = make_norm(c.norm, c.dim, c.norm_eps) if c.norm_position == "pre" else None
        self.dropout = Dropout(c.dropout)

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """After the last block: the final norm of pre-norm stacks, then dropout (T5)."""
        return self.dropout(self.norm(x)) if self.norm is not None else x


def _attention(c: Seq2SeqConfig, causal: bool = False) -> MultiHeadAttention:
    return MultiHeadAttention(
        c.dim,
        c.heads,
        causal=causal,
        bias=c.bias,
        dropout=c.attention_dropout,
        head_dim=c.head_dim,
        scale=None if c.scale_attention else 1.0,
    )


def _mlp(c: Seq2SeqConfig) -> nn.Module:
    if c.mlp == "gated":
        return GatedMLP(c.dim, c.mlp_dim, c.activation, c.bias, c.dropout)
    return MLP(c.dim, c.mlp_dim, c.activation, c.bias, c.dropout)


class Seq2SeqCache:
    """What step-by-step decoding keeps: the decoder's self-attention keys and values so far, and every
    cross-attention layer's keys and values of the encoder output (computed once per source)."""

    def __init__(self, layers: int, cross: list[tuple[torch.Tensor, torch.Tensor]], memory_mask: torch.Tensor | None):
        self.self_attn = KVCache(layers)
        self.cross = cross  # per decoder block: keys, values (B, H, S, d)
        self.memory_mask = memory_mask  # (B, S) 1 = source token

    @property
    def length(self) -> int:
        return self.self_attn.length

    def select(self, index: torch.Tensor) -> None:
        """Keep rows `index` of everything (rows from other sources too)."""
        self.self_attn.select(index)
        self.cross = [(k[index], v[index]) for k, v in self.cross]
        self.memory_mask = self.memory_mask[index] if self.memory_mask is not None else None


def too_long(source: bool, start: int, length: int, limit: int) -> str:
    """The message for tokens past the position table: which side, how long, the limit, and what to do."""
    if source:
        return (
            f"a source of {length} tokens is longer than the model's {limit} positions (model.max_positions): "
            f"truncate sources to at most {limit} tokens (data.max_length in a config, --max-length on the "
            "command line)"
        )
    if start == 0:  # teacher forcing: the whole target at once
        return (
            f"a target of {length} tokens is longer than the model's {limit} positions (model.max_positions): "
            f"truncate targets to at most {limit} tokens (data.max_length)"
        )
    return (
        f"decoding reached position {start + length} of a model with {limit} positions (model.max_positions): "
        f"ask for at most {limit} new tokens (generation.max_new_tokens, --max-new-tokens)"
    )


class Seq2Seq(ModelBase):
    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        c = self.config = config
        self.embed = nn.Embedding(c.vocab_size, c.dim)
        self.embed_scale = math.sqrt(c.dim) if c.scale_embeddings else 1.0
        self.encoder = Stack(c, c.layers, decoder=False)
        self.decoder = Stack(c, c.num_decoder_layers, decoder=True)
        self.head = self.make_head(c.head, c.num_labels)
        init_weights(self, c.init_std)
        if c.scale_embeddings:  # scaled by sqrt(dim), the embeddings start at unit size (as fairseq)
            nn.init.normal_(self.embed.weight, 0.0, c.dim**-0.5)
        self.tie_weights()

    def make_head(self, kind: str, num_outputs: int) -> nn.Module:
        c = self.config
        check_choice("model.head", kind, SEQ2SEQ_HEADS)
        if kind == "lm":
            return LMHead(c.dim, c.vocab_size, bias=c.logits_bias, scale=c.dim**-0.5 if c.scale_output else 1.0)
        return NoHead()

    def reset_head(self, num_outputs: int, kind: str = "lm") -> None:
        """An LM head over the same vocabulary is kept: the trained output layer is the right start for any
        text-to-text task. Any other head is replaced by a freshly initialised one."""
        if kind == "lm" and self.config.head == "lm" and num_outputs == self.config.vocab_size:
            return
        super().reset_head(num_outputs, kind)

    def tie_weights(self) -> None:
        if self.config.tie_embeddings and isinstance(self.head, LMHead):
            self.head.proj.weight = self.embed.weight

    def fsdp_units(self) -> list[nn.Module]:
        return [*self.encoder.blocks, *self.decoder.blocks]

    def embed_tokens(self, ids: torch.Tensor, stack: Stack, start: int = 0) -> torch.Tensor:
        """(B, T) ids at positions start .. start + T - 1 -> (B, T, C): scaled embeddings (+ positions), dropout."""
        x = self.embed(ids) * self.embed_scale if self.embed_scale != 1.0 else self.embed(ids)
        if stack.positions is not None:
            if start + ids.shape[1] > self.config.max_positions:
                raise ConfigError(too_long(stack is self.encoder, start, ids.shape[1], self.config.max_positions))
            x = x + stack.positions(torch.arange(start, start + ids.shape[1], device=ids.device).expand_as(ids))
        return stack.dropout(x)

    # ------------------------------------------------------------------ encoder
    def forward_features(
        self,
        input_ids: torch.Tensor,  # (B, S) source
        attention_mask: torch.Tensor | None = None,  # (B, S) 1 = token, 0 = padding
    ) -> torch.Tensor:
        """The encoder: source ids -> memory (B, S, C)."""
        S = input_ids.shape[1]
        e = self.encoder
        x = self.embed_tokens(input_ids, e)  # (B, S, C)
        mask = padding_mask(attention_mask) if attention_mask is not None else None  # (B, 1, 1, S)
        bias = e.relative(S, S) if e.relative is not None else None  # (1, H, S, S)
        for block in e.blocks:
            x = block(x, mask=mask, position_bias=bias)  # (B, S, C)
        return e.finish(x)

    # ------------------------------------------------------------------ decoder
    def new_cache(self, memory: torch.Tensor, memory_mask: torch.Tensor | None = None) -> Seq2SeqCache:
        """A cache for step-by-step decoding of `memory` (B, S, C): the cross-attention keys and values, once."""
        cross = [block.cross_attn.project_kv(memory) for block in self.decoder.blocks]
        return Seq2SeqCache(len(self.decoder.blocks), cross, memory_mask)

    def decode(
        self,
        decoder_input_ids: torch.Tensor,  # (B, T) target so far, behind the start token
        memory: torch.Tensor | None = None,  # (B, S, C) encoder output; not needed with a cache
        memory_mask: torch.Tensor | None = None,  # (B, S) 1 = source token
        decoder_attention_mask: torch.Tensor | None = None,  # (B, cached + T) 1 = target token
        cache: Seq2SeqCache | None = None,
    ) -> torch.Tensor:
        """Decoder hidden states (B, T, C); with `cache`, the T new positions follow the cached ones."""
        T = decoder_input_ids.shape[1]
        start = cache.length if cache is not None else 0
        d = self.decoder
        x = self.embed_tokens(decoder_input_ids, d, start)  # (B, T, C)
        self_mask = padding_mask(decoder_attention_mask) if decoder_attention_mask is not None else None
        bias = d.relative(T, start + T, offset=start) if d.relative is not None else None  # (1, H, T, start + T)
        if cache is not None:
            memory_mask = cache.memory_mask
        context_mask = padding_mask(memory_mask) if memory_mask is not None else None  # (B, 1, 1, S)
        for i, block in enumerate(d.blocks):
            x = block(
                x,
                mask=self_mask,
                position_bias=bias,
                context=memory,
                context_mask=context_mask,
                cache=cache.self_attn[i] if cache is not None else None,
                context_kv=cache.cross[i] if cache is not None else None,
            )  # (B, T, C)
        return d.finish(x)

    # ------------------------------------------------------------------ head
    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, S, C) encoder output -> (B, C): the mean over source tokens (or the first: pooling cls)."""
        return pool(hidden, attention_mask, self.config.pooling)

    def forward_head(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder hidden states (B, T, C) -> logits (B, T, V) (head 'none': the hidden states)."""
        return self.head(hidden)

    def forward(self, input_ids, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None):
        """Teacher forcing: logits (B, T, V) of every target position."""
        if decoder_input_ids is None:
            raise ValueError("an encoder-decoder model needs decoder_input_ids (the target behind the start token)")
        memory = self.forward_features(input_ids, attention_mask)  # (B, S, C)
        hidden = self.decode(decoder_input_ids, memory, attention_mask, decoder_attention_mask)  # (B, T, C)
        return self.forward_head(hidden)
