"""Which weights a fine-tuning method trains: `prepare(model, method)` sets requires_grad and counts them.

    full      every weight (optionally with layer-wise learning-rate decay: `layerwise_param_groups`)
    head      only `model.head`; the body (embeddings, blocks, pooler, norms) is frozen
    features  nothing in the model: a classifier is fitted on cached frozen features (see features.py)
    lora      the LoRA adapters (lora_a, lora_b) and the head; every base weight is frozen

No method has per-model code: the head is always `model.head`, the body is everything else, and LoRA
targets are matched by module name.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from torch import nn

from ..config import check_choice
from .lora import apply_lora, lora_modules

METHODS = ("full", "head", "features", "lora")


def body_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Every named parameter outside `model.head` (tied weights appear once, under their first name)."""
    head_ids = {id(p) for p in model.head.parameters()}
    return {n: p for n, p in model.named_parameters() if id(p) not in head_ids and not n.startswith("head.")}


def prepare(
    model: nn.Module,
    method: str,
    *,
    lora_rank: int = 8,
    lora_alpha: float = 16.0,
    lora_dropout: float = 0.0,
    lora_targets: Sequence[str] = ("q", "v"),
) -> int:
    """Set requires_grad for `method` (adding adapters for 'lora'); returns the trainable parameter count."""
    check_choice("finetune.method", method, METHODS)
    if method == "lora" and not lora_modules(model):
        apply_lora(model, lora_rank, lora_alpha, lora_dropout, lora_targets)
    for name, p in model.named_parameters():
        if method == "full":
            p.requires_grad_(True)
        elif method == "lora":
            p.requires_grad_(".lora_a." in name or ".lora_b." in name or name.startswith("head."))
        elif method == "head":
            p.requires_grad_(name.startswith("head."))
        else:  # features: the model only embeds
            p.requires_grad_(False)
    if method == "head":
        for p in body_parameters(model).values():  # a head weight tied to the body stays frozen
            p.requires_grad_(False)
    return trainable_parameters(model)


def trainable_parameters(model: nn.Module) -> int:
    seen, total = set(), 0
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


_BLOCK = re.compile(r"(?:^|\.)(?:blocks|layers|layer|h)\.(\d+)\.")


def layer_depth(name: str, num_layers: int) -> int:
    """0 for embeddings, i + 1 for block i, num_layers + 1 for everything after the blocks (norm, pooler, head)."""
    match = _BLOCK.search(name)
    if match:
        return int(match.group(1)) + 1
    if name.startswith(("embed", "positions", "rope", "tokens")):
        return 0
    return num_layers + 1


def layerwise_param_groups(model: nn.Module, lr: float, decay: float, weight_decay: float = 0.0) -> list[dict]:
    """Optimizer groups with lr * decay ** (num_layers + 1 - depth): the top keeps `lr`, embeddings get the least.

    Each group also carries `lr_scale` = decay ** (num_layers + 1 - depth), which the Trainer's schedule
    multiplies in (`Trainer(..., param_groups=groups)`). Weight decay follows the Trainer's rule
    (`training.optim.decay_flags`): none for biases, norm weights and embedding tables.
    """
    from ..training.optim import decay_flags

    flags = decay_flags(model)
    num_layers = getattr(getattr(model, "config", None), "layers", None)
    if num_layers is None:
        num_layers = (
            max((layer_depth(n, 0) - 1 for n, _ in model.named_parameters() if _BLOCK.search(n)), default=-1) + 1
        )
    groups: dict[tuple[int, bool], dict] = {}
    seen = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        depth = layer_depth(name, num_layers)
        no_decay = not flags[id(p)]
        scale = decay ** (num_layers + 1 - depth)
        group = groups.setdefault(
            (depth, no_decay),
            {
                "params": [],
                "names": [],
                "lr": lr * scale,
                "lr_scale": scale,
                "weight_decay": 0.0 if no_decay else weight_decay,
            },
        )
        group["params"].append(p)
        group["names"].append(name)
    return [groups[k] for k in sorted(groups)]
