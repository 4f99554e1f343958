"""Vision Transformer (Dosovitskiy et al. 2021): patches -> [CLS] + positions -> N pre-norm blocks -> norm -> head.

The blocks are the shared ones of `damoxing/layers` (the same attention and MLP as GPT-2 and BERT).
Heads: 'none' (features) and 'sequence' (image classification over the pooled state).
Pooling: 'cls' (the class token, as Hugging Face's ViTForImageClassification), 'mean' (the patch tokens'
average, as timm's global_pool='avg'), or 'pooler' (dense + tanh over [CLS], ViTModel's pooler).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import check, check_choice, check_positive, check_range
from ..layers import MLP, MultiHeadAttention, NoHead, PatchEmbedding, PreNormBlock, SequenceHead, sinusoidal_2d_table
from ..layers.dropout import Dropout
from ..layers.mlp import ACTIVATIONS
from .base import ModelBase, init_weights

VIT_HEADS = ("none", "sequence")


@dataclass(frozen=True)
class ViTConfig:
    image_size: int = 224  # square images of this side
    patch_size: int = 16
    channels: int = 3
    dim: int = 768
    layers: int = 12
    heads: int = 12
    mlp_dim: int = 3072
    activation: str = "gelu"
    norm_eps: float = 1e-12
    class_token: bool = True  # a learned [CLS] token before the patches
    position: str = "learned"  # learned | sinusoidal (fixed 2-D table)
    pooling: str = "cls"  # cls | mean | pooler: what sequence heads see
    pooler: bool = False  # ViTModel's dense + tanh layer over [CLS]
    dropout: float = 0.0
    attention_dropout: float = 0.0
    head: str = "none"
    num_labels: int = 2
    classifier_dropout: float = 0.0
    init_std: float = 0.02

    def __post_init__(self):
        for key in ("image_size", "patch_size", "channels", "dim", "layers", "heads", "mlp_dim", "num_labels"):
            check_positive(f"model.{key}", getattr(self, key))
        check(
            self.image_size % self.patch_size == 0,
            "model.image_size",
            f"{self.image_size} must be divisible by model.patch_size ({self.patch_size}).",
        )
        check(self.dim % self.heads == 0, "model.dim", f"{self.dim} must be divisible by model.heads ({self.heads}).")
        check_choice("model.activation", self.activation, tuple(ACTIVATIONS))
        check_choice("model.position", self.position, ("learned", "sinusoidal"))
        check(
            self.position != "sinusoidal" or self.dim % 4 == 0,
            "model.dim",
            f"{self.dim} must be divisible by 4 for 2-D sinusoidal positions.",
        )
        check_choice("model.pooling", self.pooling, ("cls", "mean", "pooler"))
        check(
            self.pooling == "mean" or self.class_token,
            "model.pooling",
            f"{self.pooling!r} reads the class token; set model.class_token: true or pooling: mean.",
        )
        check(self.pooling != "pooler" or self.pooler, "model.pooling", "'pooler' needs model.pooler: true.")
        check_choice("model.head", self.head, VIT_HEADS)
        for key in ("dropout", "attention_dropout", "classifier_dropout"):
            check_range(f"model.{key}", getattr(self, key), 0.0, 1.0)

    @property
    def patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


class Embeddings(nn.Module):
    """patches -> [CLS] prepended -> + positions -> dropout."""

    def __init__(self, c: ViTConfig):
        super().__init__()
        self.patches = PatchEmbedding(c.channels, c.dim, c.patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, c.dim)) if c.class_token else None
        tokens = c.patches + int(c.class_token)
        side = c.image_size // c.patch_size
        if c.position == "learned":
            self.positions = nn.Parameter(torch.zeros(1, tokens, c.dim))
        else:  # fixed, not saved: the class token's position is zero (MAE)
            table = torch.cat([torch.zeros(int(c.class_token), c.dim), sinusoidal_2d_table(side, side, c.dim)])
            self.register_buffer("positions", table[None], persistent=False)
        self.dropout = Dropout(c.dropout)
        self.image_size = c.image_size

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        B, _, H, W = pixel_values.shape
        if (H, W) != (self.image_size, self.image_size):
            raise ValueError(
                f"images are {H}x{W}, the model takes {self.image_size}x{self.image_size}; "
                "resize them (the model's preprocessor does)"
            )
        x = self.patches(pixel_values)  # (B, N, C)
        if self.cls is not None:
            x = torch.cat([self.cls.expand(B, -1, -1), x], dim=1)  # (B, 1 + N, C)
        return self.dropout(x + self.positions)


class ViT(ModelBase):
    def __init__(self, config: ViTConfig):
        super().__init__()
        c = self.config = config
        self.embed = Embeddings(c)
        self.blocks = nn.ModuleList(
            PreNormBlock(
                attn=MultiHeadAttention(c.dim, c.heads, dropout=c.attention_dropout),
                mlp=MLP(c.dim, c.mlp_dim, c.activation, dropout=c.dropout),
                norm1=nn.LayerNorm(c.dim, eps=c.norm_eps),
                norm2=nn.LayerNorm(c.dim, eps=c.norm_eps),
                dropout=c.dropout,
            )
            for _ in range(c.layers)
        )
        self.norm = nn.LayerNorm(c.dim, eps=c.norm_eps)
        self.pooler = nn.Linear(c.dim, c.dim) if c.pooler else None
        self.head = self.make_head(c.head, c.num_labels)
        init_weights(self, c.init_std)
        with torch.no_grad():  # as transformers and timm: truncated normal for the class token and positions
            for p in (self.embed.cls, self.embed.positions):
                if isinstance(p, nn.Parameter):
                    nn.init.trunc_normal_(p, std=c.init_std)

    def make_head(self, kind: str, num_outputs: int) -> nn.Module:
        check_choice("model.head", kind, VIT_HEADS)
        if kind == "sequence":
            return SequenceHead(self.config.dim, num_outputs, self.config.classifier_dropout)
        return NoHead()

    def forward_features(self, pixel_values: torch.Tensor, tokens: int | None = None) -> torch.Tensor:
        """(B, C, H, W) normalised pixels -> (B, T, C) states; `tokens=n`: the first n tokens only, exactly as
        they are among all T (the last block computes just those rows: all a class-token head reads)."""
        x = self.embed(pixel_values)  # (B, T, C), T = [CLS] + patches
        for block in self.blocks[:-1]:
            x = block(x)  # (B, T, C): every token sees every other, no mask
        x = self.blocks[-1](x, queries=tokens)  # (B, T or tokens, C)
        return self.norm(x)

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, C) -> (B, C) as chosen by config.pooling ('mean' averages the patches, not [CLS])."""
        if self.config.pooling == "mean":
            return hidden[:, int(self.config.class_token) :].mean(1)
        if self.config.pooling == "pooler":
            return torch.tanh(self.pooler(hidden[:, 0]))
        return hidden[:, 0]

    def forward_head(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(hidden, self.pool(hidden))

    def head_tokens(self) -> int | None:
        """How many leading tokens the head reads: 1 when it reads the class token alone (cls or pooler
        pooling, a sequence head, no attention maps being recorded), else None (all of them)."""
        recording = any(block.attn.record_probs for block in self.blocks)
        reads_cls = self.config.pooling in ("cls", "pooler") and isinstance(self.head, SequenceHead)
        return 1 if reads_cls and not recording else None

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, num_labels)
        return self.forward_head(self.forward_features(pixel_values, tokens=self.head_tokens()))
