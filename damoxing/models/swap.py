"""Module surgery in place, the one way LoRA, quantization and pruning change a model's layers.

    names = swap_modules(model, lambda name, m: isinstance(m, nn.Linear) and matches(name, "attn.q"),
                         lambda name, m: LoRALinear(m, rank=8, alpha=16))

Matching is by module name only, so it works on any model, ours or not.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

from torch import nn


def matches(name: str, pattern: str) -> bool:
    """`pattern` is a glob over the full module name or a dotted suffix: 'q', 'attn.q', 'blocks.*.mlp.fc1'."""
    return name == pattern or name.endswith("." + pattern) or fnmatch.fnmatchcase(name, pattern)


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put `module` at the dotted `name` inside `model`, replacing what was there."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def swap_modules(
    model: nn.Module, select: Callable[[str, nn.Module], bool], replace: Callable[[str, nn.Module], nn.Module]
) -> list[str]:
    """Replace every submodule with select(name, module) true by replace(name, module); returns their names.

    The names are collected first, so a replacement's own children are never visited.
    """
    names = [n for n, m in model.named_modules() if n and select(n, m)]
    for name in names:
        set_module(model, name, replace(name, model.get_submodule(name)))
    return names
