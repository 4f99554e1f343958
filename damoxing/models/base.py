"""What every model family shares: the head surface, attention recording, weight init, parameter counts."""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from ..config import check
from ..layers import MultiHeadAttention


def check_layer_heads(layer_heads: tuple[int, ...], layers: int, heads: int) -> None:
    """model.layer_heads, when set: one count per layer, each between 1 and model.heads."""
    if not layer_heads:
        return
    check(
        len(layer_heads) == layers,
        "model.layer_heads",
        f"needs one head count per layer ({layers}), got {len(layer_heads)}.",
    )
    check(
        all(1 <= h <= heads for h in layer_heads),
        "model.layer_heads",
        f"each layer keeps between 1 and model.heads ({heads}) heads, got {list(layer_heads)}.",
    )


def init_weights(model: nn.Module, std: float = 0.02, residual_layers: int | None = None) -> None:
    """Normal(0, std) for Linear and Embedding weights, zero biases, unit norms.

    With `residual_layers`, projections that write into the residual stream (attn.o, mlp.fc2, mlp.down)
    get std / sqrt(2 * layers), as in GPT-2.
    """
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            s = std
            if residual_layers and name.endswith(("attn.o", "mlp.fc2", "mlp.down")):
                s = std / math.sqrt(2 * residual_layers)
            nn.init.normal_(m.weight, 0.0, s)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, std)
        elif isinstance(m, (nn.LayerNorm, nn.RMSNorm)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)


class ModelBase(nn.Module):
    """Surface shared by all families: forward = forward_head(forward_features(...))."""

    config: object  # each family also defines make_head(kind, num_outputs)

    def reset_head(self, num_outputs: int, kind: str = "sequence") -> None:
        """Replace the head with a freshly initialised one: kind 'sequence' | 'token' | family heads."""
        self.config = dataclasses.replace(self.config, head=kind, num_labels=num_outputs)
        self.head = self.make_head(kind, num_outputs)
        init_weights(self.head, self.config.init_std)
        self.tie_weights()

    def tie_weights(self) -> None:
        """Families with tied embeddings override this."""

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, C) features -> (B, C): what a sequence head sees. Each family defines it."""
        raise NotImplementedError

    def fsdp_units(self) -> list[nn.Module]:
        """The modules FSDP shards one by one (each family's repeated blocks)."""
        return list(self.blocks)

    def record_attention(self, on: bool = True) -> list[MultiHeadAttention]:
        """Keep attention probabilities in each attention module's `.probs` (slower path while on)."""
        mods = [m for m in self.modules() if isinstance(m, MultiHeadAttention)]
        for m in mods:
            m.record_probs, m.probs = on, None
        return mods

    def num_parameters(self, trainable_only: bool = False) -> int:
        seen, total = set(), 0
        for p in self.parameters():
            if id(p) in seen or (trainable_only and not p.requires_grad):
                continue
            seen.add(id(p))
            total += p.numel()
        return total

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device
