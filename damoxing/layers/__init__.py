"""Shared building blocks every model family is assembled from. Plain constructor arguments only."""

from .attention import KVCache, LayerKV, MultiHeadAttention, causal_mask
from .block import PostNormBlock, PreNormBlock
from .heads import LMHead, MaskedLMHead, NoHead, PretrainingHead, SequenceHead, TokenHead, pool
from .losses import IGNORE_INDEX, linear_cross_entropy
from .masks import combine_masks, document_mask, padding_mask
from .mlp import MLP, GatedMLP, SwiGLU
from .norms import make_norm
from .patches import PatchEmbedding, sinusoidal_2d_table
from .positions import (
    LearnedPositions,
    RelativePositionBias,
    RotaryEmbedding,
    SinusoidalPositions,
    apply_rotary,
    sinusoidal_table,
)

__all__ = [
    "IGNORE_INDEX",
    "MLP",
    "GatedMLP",
    "KVCache",
    "LMHead",
    "LayerKV",
    "LearnedPositions",
    "MaskedLMHead",
    "MultiHeadAttention",
    "NoHead",
    "PatchEmbedding",
    "PostNormBlock",
    "PreNormBlock",
    "PretrainingHead",
    "RelativePositionBias",
    "RotaryEmbedding",
    "SequenceHead",
    "SinusoidalPositions",
    "SwiGLU",
    "TokenHead",
    "apply_rotary",
    "causal_mask",
    "combine_masks",
    "document_mask",
    "linear_cross_entropy",
    "make_norm",
    "padding_mask",
    "pool",
    "sinusoidal_2d_table",
    "sinusoidal_table",
]
