"""VGG-style convolutional network (Simonyan and Zisserman 2015): stages of 3x3 conv -> batch norm -> ReLU,
each stage ending in 2x2 max pooling, then adaptive pooling, fully connected layers and the head.

    vgg11: widths (64, 128, 256, 512, 512), depths (1, 1, 2, 2, 2), 7x7 pooling, two 4096-wide FC layers
    vgg16: the same widths, depths (2, 2, 3, 3, 3)                        (torchvision's vgg11_bn, vgg16_bn)

`forward_features` gives the last feature map (B, C, h, w); `pool` turns it into the vector a head sees
(adaptive pooling to pool_size x pool_size, flattened, through the FC layers), so `head`, `features` and
`lora` (on the FC layers) fine-tuning work as for the Transformers.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check, check_choice, check_positive, check_range
from ..layers import NoHead, SequenceHead
from ..layers.dropout import Dropout
from .base import ModelBase, init_weights

CNN_HEADS = ("none", "sequence")


@dataclass(frozen=True)
class CNNConfig:
    image_size: int = 224  # the size the preprocessor resizes to (the network itself takes any size)
    channels: int = 3
    widths: tuple[int, ...] = (64, 128, 256, 512, 512)  # output channels of each stage
    depths: tuple[int, ...] = (1, 1, 2, 2, 2)  # 3x3 convolutions per stage
    batch_norm: bool = True
    pooling: str = "mean"  # mean | max: the adaptive pooling after the last stage
    pool_size: int = 7  # its output side (1: global pooling)
    fc_dims: tuple[int, ...] = (4096, 4096)  # fully connected layers before the head (ReLU + dropout each)
    dropout: float = 0.5  # after each FC layer
    head: str = "none"
    num_labels: int = 2
    classifier_dropout: float = 0.0
    init_std: float = 0.01  # the head's (and FC layers') normal init; convolutions use Kaiming

    def __post_init__(self):
        for key in ("image_size", "channels", "pool_size", "num_labels"):
            check_positive(f"model.{key}", getattr(self, key))
        check(
            len(self.widths) > 0 and len(self.widths) == len(self.depths),
            "model.depths",
            f"give one depth per stage width ({len(self.widths)} widths, {len(self.depths)} depths).",
        )
        for key in ("widths", "depths", "fc_dims"):
            for v in getattr(self, key):
                check_positive(f"model.{key}", v)
        check_choice("model.pooling", self.pooling, ("mean", "max"))
        check_choice("model.head", self.head, CNN_HEADS)
        for key in ("dropout", "classifier_dropout"):
            check_range(f"model.{key}", getattr(self, key), 0.0, 1.0)

    @property
    def layers(self) -> int:
        return sum(self.depths)

    @property
    def dim(self) -> int:
        """Width of the vector a head sees."""
        return self.fc_dims[-1] if self.fc_dims else self.widths[-1] * self.pool_size**2


class ConvUnit(nn.Module):
    """3x3 conv (padding 1) -> batch norm -> ReLU (-> 2x2 max pool at the end of a stage)."""

    def __init__(self, in_channels: int, out_channels: int, batch_norm: bool, pool: bool):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=not batch_norm)
        self.norm = nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity()
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, C_out, H', W')
        return self.pool(F.relu(self.norm(self.conv(x))))


class FullyConnected(nn.Module):
    """Linear -> ReLU -> dropout."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float):
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(F.relu(self.fc(x)))


class CNN(ModelBase):
    def __init__(self, config: CNNConfig):
        super().__init__()
        c = self.config = config
        units, width = [], c.channels
        for out, depth in zip(c.widths, c.depths):
            for i in range(depth):
                units.append(ConvUnit(width, out, c.batch_norm, pool=i == depth - 1))
                width = out
        self.blocks = nn.ModuleList(units)
        dims = (c.widths[-1] * c.pool_size**2, *c.fc_dims)
        self.fcs = nn.ModuleList(FullyConnected(a, b, c.dropout) for a, b in itertools.pairwise(dims))
        self.head = self.make_head(c.head, c.num_labels)
        for m in self.modules():  # torchvision's VGG init: Kaiming for convolutions, N(0, 0.01) for linears
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        init_weights(self.fcs, c.init_std)
        init_weights(self.head, c.init_std)
        # the convolution weights in channels-last layout: oneDNN's CPU convolutions then run channels-last, forward
        # and backward (vgg-small: 162 against 194 ms a training step here); values and state dict are unchanged
        self.to(memory_format=torch.channels_last)

    def make_head(self, kind: str, num_outputs: int) -> nn.Module:
        check_choice("model.head", kind, CNN_HEADS)
        if kind == "sequence":
            return SequenceHead(self.config.dim, num_outputs, self.config.classifier_dropout)
        return NoHead()

    def forward_features(self, pixel_values: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) normalised pixels
        x = pixel_values
        for block in self.blocks:
            x = block(x)  # (B, C_i, H_i, W_i): each stage halves the side
        return x  # (B, C, h, w)

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, h, w) -> (B, dim): adaptive pooling, flatten, the fully connected layers."""
        size = self.config.pool_size
        pool = F.adaptive_avg_pool2d if self.config.pooling == "mean" else F.adaptive_max_pool2d
        x = pool(hidden, size).flatten(1)  # (B, C * size * size)
        for fc in self.fcs:
            x = fc(x)  # (B, fc_dim)
        return x

    def forward_head(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(hidden, self.pool(hidden))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(pixel_values))
