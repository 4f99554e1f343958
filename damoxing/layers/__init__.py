"""Shared building blocks every model family is assembled from. Plain constructor arguments only."""
from .attention import KVCache, LayerKV, MultiHeadAttention, causal_mask
from .block import PostNormBlock, PreNormBlock
from .losses import IGNORE_INDEX, linear_cross_entropy
from .heads import LMHead, MaskedLMHead, NoHead, PretrainingHead, SequenceHead, TokenHead, pool
from .masks import combine_masks, document_mask, padding_mask
from .mlp import MLP, GatedMLP, SwiGLU
from .norms import make_norm
from .patches import PatchEmbedding, sinusoidal_2d_table
from .positions import (
    LearnedPositions, RelativePositionBias, RotaryEmbedding, SinusoidalPositions, apply_rotary, sinusoidal_table,
)

__all__ = [
    "IGNORE_INDEX", "linear_cross_entropy", "KVCache", "LayerKV", "MultiHeadAttention", "causal_mask", "PostNormBlock", "PreNormBlock",
    "LMHead", "MaskedLMHead", "NoHead", "PretrainingHead", "SequenceHead", "TokenHead", "pool",
    "combine_masks", "document_mask", "padding_mask", "MLP", "GatedMLP", "SwiGLU", "make_norm", "PatchEmbedding",
    "sinusoidal_2d_table", "LearnedPositions", "RelativePositionBias", "RotaryEmbedding", "SinusoidalPositions",
    "apply_rotary", "sinusoidal_table",
]
