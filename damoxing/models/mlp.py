"""A plain multilayer perceptron (MLP / DNN) for flattened images or tabular features.

    inputs (B, input_dim) -> [Linear -> (batch norm) -> activation -> dropout] x len(hidden) -> head

Images (B, C, H, W) are flattened first, so `input_dim` = C * H * W (784 for MNIST). Presets follow
Zalando's Fashion-MNIST benchmark table (a 256-128-100 ReLU MLP).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn

from ..config import check, check_choice, check_positive, check_range
from ..layers import NoHead, SequenceHead
from ..layers.dropout import Dropout
from ..layers.mlp import ACTIVATIONS
from .base import ModelBase, init_weights

MLP_HEADS = ("none", "sequence")


@dataclass(frozen=True)
class MLPConfig:
    input_dim: int = 784  # features per example (C * H * W for images)
    hidden: tuple[int, ...] = (256, 128, 100)  # width of each hidden layer
    activation: str = "relu"
    batch_norm: bool = False  # after each hidden Linear, before the activation
    dropout: float = 0.0  # after each hidden layer
    image_size: int = 28  # images: the side the preprocessor resizes to (input_dim = channels * side^2)
    head: str = "none"
    num_labels: int = 2
    classifier_dropout: float = 0.0
    init_std: float = 0.02  # the head's normal init; hidden layers use Kaiming (He) init

    def __post_init__(self):
        for key in ("input_dim", "image_size", "num_labels"):
            check_positive(f"model.{key}", getattr(self, key))
        check(len(self.hidden) > 0, "model.hidden", "give at least one hidden layer width, e.g. [256, 128].")
        for v in self.hidden:
            check_positive("model.hidden", v)
        check_choice("model.activation", self.activation, tuple(ACTIVATIONS))
        check_choice("model.head", self.head, MLP_HEADS)
        for key in ("dropout", "classifier_dropout"):
            check_range(f"model.{key}", getattr(self, key), 0.0, 1.0)

    @property
    def layers(self) -> int:
        return len(self.hidden)

    @property
    def dim(self) -> int:
        return self.hidden[-1]


class Dense(nn.Module):
    """Linear -> (batch norm) -> activation -> dropout."""

    def __init__(self, in_dim: int, out_dim: int, activation: str, batch_norm: bool, dropout: float):
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim, bias=not batch_norm)
        self.norm = nn.BatchNorm1d(out_dim) if batch_norm else nn.Identity()
        self.act = ACTIVATIONS[activation]
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in) -> (B, out)
        return self.dropout(self.act(self.norm(self.fc(x))))


class MLPNet(ModelBase):
    def __init__(self, config: MLPConfig):
        super().__init__()
        c = self.config = config
        dims = (c.input_dim, *c.hidden)
        self.blocks = nn.ModuleList(
            Dense(a, b, c.activation, c.batch_norm, c.dropout) for a, b in itertools.pairwise(dims)
        )
        self.head = self.make_head(c.head, c.num_labels)
        for block in self.blocks:  # He init suits ReLU-family activations
            nn.init.kaiming_normal_(block.fc.weight, nonlinearity="relu")
            if block.fc.bias is not None:
                nn.init.zeros_(block.fc.bias)
        init_weights(self.head, c.init_std)

    def make_head(self, kind: str, num_outputs: int) -> nn.Module:
        check_choice("model.head", kind, MLP_HEADS)
        if kind == "sequence":
            return SequenceHead(self.config.dim, num_outputs, self.config.classifier_dropout)
        return NoHead()

    def forward_features(
        self,
        pixel_values: torch.Tensor | None = None,  # (B, C, H, W) images
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:  # (B, input_dim) tabular rows
        if (pixel_values is None) == (features is None):
            raise ValueError("give pixel_values (images) or features (tabular rows), not both")
        x = pixel_values.flatten(1) if pixel_values is not None else features  # (B, input_dim)
        if x.shape[1] != self.config.input_dim:
            raise ValueError(f"the model takes {self.config.input_dim} inputs per example, got {x.shape[1]}")
        for block in self.blocks:
            x = block(x)  # (B, hidden_i)
        return x  # (B, dim)

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return hidden  # already one vector per example

    def forward_head(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(hidden, self.pool(hidden))

    def forward(self, pixel_values: torch.Tensor | None = None, features: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_head(self.forward_features(pixel_values, features))
