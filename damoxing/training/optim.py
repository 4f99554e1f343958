"""Optimisers and learning-rate schedules.

Weight decay applies to matrices only: biases, norm weights and embedding tables are left alone
(as in BERT, GPT-2 and most recipes since). The schedule is a pure function of the step, so a
resumed run needs nothing but the step number to continue it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import TrainConfig

NO_DECAY_MODULES = (nn.LayerNorm, nn.RMSNorm, nn.Embedding, nn.GroupNorm, nn.BatchNorm1d)


def decay_flags(model: nn.Module) -> dict[int, bool]:
    """id(parameter) -> whether weight decay applies: matrices yes; biases, norm weights, embedding tables no.
    A tied parameter is judged by the first module that holds it."""
    flags: dict[int, bool] = {}
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) not in flags:
                no_decay = isinstance(module, NO_DECAY_MODULES) or getattr(module, "no_weight_decay", False)
                flags[id(p)] = not (no_decay or name == "bias" or p.ndim < 2)
    return flags


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters split into a decay group (Linear weights) and a no-decay group (the rest)."""
    flags = decay_flags(model)
    decay, no_decay = [], []
    for p in model.parameters():  # each parameter once, tied ones included
        if p.requires_grad:
            (decay if flags[id(p)] else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, c: TrainConfig, groups: list[dict] | None = None) -> torch.optim.Optimizer:
    """The configured optimiser over `groups` (default: `parameter_groups`). A group may carry `lr_scale`:
    `set_lr` then gives it lr * lr_scale (layer-wise learning rates, e.g. `finetune.layerwise_param_groups`)."""
    groups = parameter_groups(model, c.weight_decay) if groups is None else [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("the model has no parameter with requires_grad=True: nothing to train")
    # fused kernels (CPU and GPU): one pass over each tensor instead of a dozen small ops per parameter
    if c.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=c.lr, betas=c.betas, eps=c.eps, fused=True)
    if c.optimizer == "adam":  # L2 penalty in the gradient, as torch's Adam does
        return torch.optim.Adam(groups, lr=c.lr, betas=c.betas, eps=c.eps, fused=True)
    return torch.optim.SGD(groups, lr=c.lr, momentum=c.momentum, foreach=True)


def lr_at(step: int, c: TrainConfig) -> float:
    """Learning rate for optimiser step `step` (0-based): linear warm-up, then linear/cosine/constant decay."""
    warmup, total = c.warmup, c.max_steps
    if step < warmup:
        return c.lr * (step + 1) / warmup
    if c.schedule == "constant":
        return c.lr
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    shape = 1.0 - progress if c.schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return c.lr * (c.min_lr_ratio + (1.0 - c.min_lr_ratio) * shape)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every group gets lr times its `lr_scale` (1 when absent). The scale is part of the group, so the
    optimiser's state_dict keeps it and a resumed run has it back."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
