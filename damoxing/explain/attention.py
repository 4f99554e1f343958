"""Attention maps per layer and head, and attention rollout, through the attention layers' opt-in recording.

    with recording(model) as maps:
        model(**batch)
    maps.stacks["self"][layer]      # (B, H, Tq, Tk) probabilities of that layer's heads
    rollout(maps.stacks["self"])    # (B, T, T): how much each position draws from each input position

While nothing records, every attention layer runs the fused `scaled_dot_product_attention` kernel; inside
`recording(...)` it computes the probabilities itself (softmax in float32 or wider) and keeps them in `.probs`.
Stacks are named by where the attention sits: "self" (encoders, decoders, ViT), and for encoder-decoders
"encoder", "decoder" (the decoder's self-attention) and "cross" (decoder queries over the source).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from ..layers import MultiHeadAttention


@dataclass
class AttentionMaps:
    """The modules that record, by stack; `stacks` reads their probabilities of the last forward pass."""

    modules: dict[str, list[MultiHeadAttention]] = field(default_factory=dict)

    @property
    def stacks(self) -> dict[str, list[torch.Tensor]]:
        """Stack name -> one (B, H, Tq, Tk) tensor per layer (layers that did not run are left out)."""
        return {
            name: [m.probs for m in mods if m.probs is not None]
            for name, mods in self.modules.items()
            if any(m.probs is not None for m in mods)
        }


def stack_name(module_name: str) -> str:
    """'blocks.3.attn' -> 'self'; 'encoder.blocks.0.attn' -> 'encoder'; 'decoder.blocks.1.cross_attn' -> 'cross'."""
    if module_name.endswith("cross_attn"):
        return "cross"
    prefix = module_name.split("blocks.")[0].rstrip(".")
    return prefix.rsplit(".", 1)[-1] if prefix else "self"


@contextlib.contextmanager
def recording(model: nn.Module) -> Iterator[AttentionMaps]:
    """Turn probability recording on in every attention layer of `model` for the block, and off after it."""
    maps = AttentionMaps()
    for name, module in model.named_modules():
        if isinstance(module, MultiHeadAttention):
            maps.modules.setdefault(stack_name(name), []).append(module)
    every = [m for mods in maps.modules.values() for m in mods]
    for m in every:
        m.record_probs, m.probs = True, None
    try:
        yield maps
    finally:
        for m in every:
            m.record_probs = False  # the probabilities stay readable in `maps` until the next recording


def rollout(maps: list[torch.Tensor], head_fusion: str = "mean") -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers", 2020).

    Per layer: fuse the heads (mean, or max), add the identity for the residual connection, renormalise the
    rows; then multiply the layers from the first to the last. maps: per layer (B, H, T, T) or (H, T, T).
    Returns (B, T, T) (or (T, T)): row i says how much position i of the last layer draws from each input.
    """
    if not maps:
        raise ValueError("rollout needs the attention maps of at least one layer")
    if head_fusion not in ("mean", "max"):
        raise ValueError(f"head_fusion must be 'mean' or 'max', not {head_fusion!r}")
    result = None
    for probs in maps:
        a = probs.mean(-3) if head_fusion == "mean" else probs.amax(-3)  # (B, T, T)
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = a + eye
        a = a / a.sum(-1, keepdim=True)
        result = a if result is None else a @ result  # the later layer reads what the earlier one mixed
    return result
