"""The VGG-style CNN (`models/cnn.py`) in the folder layout, as damoxing's own model type (see native.py)."""

from __future__ import annotations

from ...models.cnn import CNNConfig
from .native import native_map

NORM = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
KEYS = [
    "blocks.{}.conv.weight",
    "blocks.{}.conv.bias",
    *(f"blocks.{{}}.norm.{p}" for p in NORM),
    "fcs.{}.fc.weight",
    "fcs.{}.fc.bias",
]

MAP = native_map("damoxing_cnn", CNNConfig, KEYS, "DamoxingCNN")
