"""LoRA: low-rank adapters swapped into chosen Linear layers (composition, as in torchtune).

    apply_lora(model, rank=8, alpha=16, targets=("q", "v"))   # blocks.*.attn.q/v become LoRALinear
    ...train: only lora_a, lora_b (and the task head) have requires_grad...
    save_adapters(model, "run/adapter")                        # adapters + head, a few hundred KB
    load_adapters(fresh_base_model, "run/adapter")             # same outputs as the trained model
    merge_lora(model)                                          # plain nn.Linear again, W += s * B @ A

`LoRALinear` keeps the frozen base weight and bias as its own `weight` and `bias` parameters, so
the base keys of the state dict do not change (`blocks.0.attn.q.weight` stays that name): a base
checkpoint loads into a LoRA model as is, and the adapters add `...q.lora_a.weight` and
`...q.lora_b.weight`. The update is `y = x W^T + b + (alpha / rank) * B(A(dropout(x)))`, with A
initialised like a Linear layer (Kaiming uniform) and B at zero, so training starts from the base.

The task head is trained too (it is new), so `lora_state_dict` and the adapter file hold it: an adapter
without its head is useless for classification (a pitfall of adapter libraries that save only lora_*).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ..atomic import atomic_open, atomic_path
from ..errors import CheckpointError, ConfigError
from ..layers.dropout import Dropout
from ..models.swap import matches, swap_modules

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


class LoRALinear(nn.Module):
    """A Linear layer plus a trainable low-rank update; built from an existing `nn.Linear` (`base`)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        if rank < 1:
            raise ConfigError(f"finetune.lora_rank: must be >= 1, got {rank}.")
        self.in_features, self.out_features = base.in_features, base.out_features
        self.rank, self.alpha = rank, alpha
        self.scaling = alpha / rank
        self.weight = base.weight  # the same Parameter objects: frozen, keys unchanged
        self.bias = base.bias
        self.dropout = Dropout(dropout) if dropout > 0 else nn.Identity()
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_a = nn.Linear(self.in_features, rank, bias=False, **factory)  # A: (r, in)
        self.lora_b = nn.Linear(rank, self.out_features, bias=False, **factory)  # B: (out, r)
        nn.init.kaiming_uniform_(self.lora_a.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_b.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = F.linear(x, self.weight, self.bias)  # (..., out)
        update = self.lora_b(self.lora_a(self.dropout(x)))  # (..., r) -> (..., out)
        return base + update * self.scaling

    def delta_weight(self) -> torch.Tensor:
        """The dense update scaling * B @ A: (out, in)."""
        return (self.lora_b.weight @ self.lora_a.weight) * self.scaling

    def merged(self) -> nn.Linear:
        """A plain nn.Linear whose weight is W + scaling * B @ A."""
        linear = nn.Linear(
            self.in_features,
            self.out_features,
            bias=self.bias is not None,
            device=self.weight.device,
            dtype=self.weight.dtype,
        )
        with torch.no_grad():
            wide = torch.promote_types(self.weight.dtype, torch.float32)  # float32, or float64 for a float64 model
            linear.weight.copy_((self.weight.to(wide) + self.delta_weight().to(wide)).to(self.weight.dtype))
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        linear.weight.requires_grad_(self.weight.requires_grad)
        if self.bias is not None:
            linear.bias.requires_grad_(self.bias.requires_grad)
        return linear

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, rank={self.rank}, alpha={self.alpha}"


def linear_names(model: nn.Module) -> list[str]:
    """Names of the body's nn.Linear modules (the head is excluded): the candidates for LoRA targets."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and not _in_head(n)]


def _in_head(name: str) -> bool:
    return name == "head" or name.startswith("head.")


def apply_lora(
    model: nn.Module, rank: int = 8, alpha: float = 16.0, dropout: float = 0.0, targets: Sequence[str] = ("q", "v")
) -> list[str]:
    """Swap every body nn.Linear whose name matches a target for a LoRALinear, in place.

    Returns the wrapped module names. Works on any model: matching is by module name only.
    """
    targets = [targets] if isinstance(targets, str) else list(targets)
    names = swap_modules(
        model,
        lambda n, m: isinstance(m, nn.Linear) and not _in_head(n) and any(matches(n, t) for t in targets),
        lambda n, m: LoRALinear(m, rank, alpha, dropout),
    )
    if not names:
        suffixes = sorted({".".join(n.split(".")[-2:]) for n in linear_names(model)})
        raise ConfigError(
            f"finetune.lora_targets: {targets} match no Linear layer of this model; "
            f"layer names end in {', '.join(suffixes)}."
        )
    model.lora_config = {"rank": rank, "alpha": alpha, "dropout": dropout, "targets": targets}
    return names


def lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight and swap a plain nn.Linear back; returns the model."""
    swap_modules(model, lambda n, m: isinstance(m, LoRALinear), lambda n, m: m.merged())
    if hasattr(model, "lora_config"):
        del model.lora_config
    return model


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights (lora_a, lora_b) and the task head's weights: what a LoRA run trained."""
    state = model.state_dict()
    keep = {k: v for k, v in state.items() if ".lora_a." in k or ".lora_b." in k or _in_head(k)}
    if not any(".lora_" in k for k in keep):
        raise ValueError("the model has no LoRA adapters; call apply_lora first")
    return keep


def save_adapters(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write `adapter_model.safetensors` (adapters + head) and `adapter_config.json` into folder `path`."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in lora_state_dict(model).items()}
    with atomic_path(folder / ADAPTER_WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    config = dict(getattr(model, "lora_config", {}))
    config["targets"] = list(config.get("targets", []))
    config["modules"] = sorted(lora_modules(model))
    mc = getattr(model, "config", None)
    if mc is not None and hasattr(mc, "head"):
        config["head"], config["num_labels"] = mc.head, mc.num_labels
        config["pooling"] = getattr(mc, "pooling", None)
    with atomic_open(folder / ADAPTER_CONFIG) as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    return folder


def read_adapter_config(path: str | os.PathLike) -> dict:
    file = Path(path) / ADAPTER_CONFIG
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{file}: no adapter config; pass the folder written by save_adapters") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{file}: not valid JSON ({e})") from None


def load_adapters(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Add the saved adapters (and head) to a base model, in place; returns the model.

    The base must be the one the adapters were trained on: every saved key must fit a parameter.
    """
    folder = Path(path)
    config = read_adapter_config(folder)
    if not lora_modules(model):
        apply_lora(model, config["rank"], config["alpha"], config.get("dropout", 0.0), config["modules"])
    mc = getattr(model, "config", None)
    if "head" in config and mc is not None and (mc.head, mc.num_labels) != (config["head"], config["num_labels"]):
        model.reset_head(config["num_labels"], config["head"])
    if config.get("pooling") and mc is not None and model.config.pooling != config["pooling"]:
        model.config = dataclasses.replace(model.config, pooling=config["pooling"])
    try:
        tensors = load_file(str(folder / ADAPTER_WEIGHTS))
    except (OSError, Exception) as e:  # safetensors raises its own error type  # noqa: BLE001
        raise CheckpointError(f"{folder / ADAPTER_WEIGHTS}: cannot read the adapters ({e})") from None
    state = model.state_dict()
    for key, value in tensors.items():
        if key not in state or state[key].shape != value.shape:
            got = tuple(state[key].shape) if key in state else "no such parameter"
            raise CheckpointError(
                f"{folder / ADAPTER_WEIGHTS}: {key} {tuple(value.shape)} does not fit this model "
                f"({got}); load the adapters onto the base model they were trained on"
            )
    model.load_state_dict(tensors, strict=False)
    return model
