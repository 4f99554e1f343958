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


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters split into a decay group (Linear weights) and a no-decay group (the rest)."""
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            (no_decay if isinstance(module, NO_DECAY_MODULES) or name == "bias" or p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, c: TrainConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, c.weight_decay)
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
    for group in optimizer.param_groups:
        group["lr"] = lr
