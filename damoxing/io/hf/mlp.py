"""The plain MLP (`models/mlp.py`) in the folder layout, as damoxing's own model type (see native.py)."""

from __future__ import annotations

from ...models.mlp import MLPConfig
from .native import native_map

NORM = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
KEYS = ["blocks.{}.fc.weight", "blocks.{}.fc.bias", *(f"blocks.{{}}.norm.{p}" for p in NORM)]

MAP = native_map("damoxing_mlp", MLPConfig, KEYS, "DamoxingMLP")
