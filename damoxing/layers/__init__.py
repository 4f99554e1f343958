"""Shared building blocks every model family is assembled from. Plain constructor arguments only."""
from .attention import KVCache, LayerKV, MultiHeadAttention, causal_mask
from .block import PostNormBlock, PreNormBlock
from .losses import IGNORE_INDEX, linear_cross_entropy
from .heads import LMHead, MaskedLMHead, NoHead, PretrainingHead, SequenceHead, TokenHead, pool
from .masks import combine_masks, document_mask, padding_mask
from .mlp import MLP, GatedMLP, SwiGLU
from .norms import make_norm
from .positions import (
    LearnedPositions, RelativePositionBias, RotaryEmbedding, SinusoidalPositions, apply_rotary, sinusoidal_table,
)

__all__ = [
    "IGNORE_INDEX", "linear_cross_entropy", "KVCache", "LayerKV", "MultiHeadAttention", "causal_mask", "PostNormBlock", "PreNormBlock",
    "LMHead", "MaskedLMHead", "NoHead", "PretrainingHead", "SequenceHead", "TokenHead", "pool",
    "combine_masks", "document_mask", "padding_mask", "MLP", "GatedMLP", "SwiGLU", "make_norm",
    "LearnedPositions", "RelativePositionBias", "RotaryEmbedding", "SinusoidalPositions", "apply_rotary", "sinusoidal_table",
]
