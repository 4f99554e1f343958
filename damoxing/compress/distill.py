"""Distillation: a smaller student from its teacher, and the soft-target loss it learns from.

    student = student_from_teacher(teacher)            # every other layer, as DistilBERT (Sanh et al. 2019)
    student = student_from_teacher(teacher, [0, 5])    # or the layers you choose
    student = student_from_preset("bert-mini", teacher)  # or a fresh model of a preset's shape
    loss = soft_target_loss(student_logits, teacher_logits, temperature=2.0)

The training objective (soft targets at a temperature plus the hard labels, weighted) is the `Distillation`
task in damoxing/tasks/distill.py; `damoxing distil CONFIG.yaml` runs it (damoxing/recipes/distill.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..models import create_model, preset


def soft_target_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)), summed over rows of (N, classes) logits.

    The T^2 keeps the gradient's size independent of T (Hinton, Vinyals and Dean 2015).
    """
    t = temperature
    return F.kl_div(
        F.log_softmax(student / t, dim=-1), F.log_softmax(teacher / t, dim=-1), log_target=True, reduction="sum"
    ) * (t * t)


def every_other_layer(layers: int) -> list[int]:
    """DistilBERT's choice: layers 0, 2, 4, ... of the teacher."""
    return list(range(0, layers, 2))


def student_from_teacher(teacher: nn.Module, layers: Sequence[int] | None = None) -> nn.Module:
    """A copy of `teacher` that keeps only the blocks `layers` (default every other one), with all other weights
    (embeddings, final norm, pooler, head) copied as they are."""
    c = teacher.config
    layers = every_other_layer(c.layers) if layers is None else list(layers)
    if not layers or any(not 0 <= i < c.layers for i in layers) or len(set(layers)) != len(layers):
        raise ConfigError(f"student.layers: pick distinct teacher layers between 0 and {c.layers - 1}, got {layers}")
    changes = {"layers": len(layers)}
    if c.layer_heads:
        changes["layer_heads"] = tuple(c.layer_heads[i] for i in layers)
    student = create_model(dataclasses.replace(c, **changes))
    state = {}
    for name, tensor in teacher.state_dict().items():
        if name.startswith("blocks."):
            index, rest = name.split(".", 2)[1:]
            if int(index) in layers:
                state[f"blocks.{layers.index(int(index))}.{rest}"] = tensor
        else:
            state[name] = tensor
    student.load_state_dict(state)
    if hasattr(teacher, "labels"):
        student.labels = list(teacher.labels)
    like = next(teacher.parameters())
    return student.to(like.device, like.dtype).train(teacher.training)


def student_from_preset(name: str, teacher: nn.Module) -> nn.Module:
    """A fresh model of preset `name` with the teacher's vocabulary and head (trained from scratch)."""
    c = teacher.config
    same = {k: getattr(c, k) for k in ("vocab_size", "head", "num_labels", "pad_id") if hasattr(c, k)}
    student = create_model(preset(name, **same))
    if type(student.config) is not type(c):
        raise ConfigError(
            f"student.preset: {name!r} is not the same family as the teacher "
            f"({type(c).__name__.removesuffix('Config').lower()})"
        )
    if hasattr(teacher, "labels"):
        student.labels = list(teacher.labels)
    return student
