"""Pruning: unstructured magnitude pruning, and attention heads removed by importance.

    magnitude_prune(model, 0.5)              # half the body's Linear weights set to zero (global L1 ranking)
    make_permanent(model)                    # masks folded into the weights: a plain model to save
    scores = head_importance(model, batches, loss)      # (layers, heads), Michel et al. 2019
    prune_heads(model, 0.5, scores)          # the least important half of all heads physically removed

Magnitude pruning goes through torch.nn.utils.prune: while it is active each pruned Linear holds
`weight_orig` and `weight_mask` and computes weight = weight_orig * weight_mask; `make_permanent` removes
the re-parametrisation, leaving zeros in a plain weight (what `damoxing prune --sparsity` saves). The
zeros make the file no smaller and the model no faster on dense kernels: that is what head pruning is for.

Head pruning ("Are Sixteen Heads Really Better than One?", Michel, Levy and Neubig 2019): a head's importance
is E_x |dL/d xi_h|, the loss's sensitivity to a gate xi_h on the head's output, which at xi = 1 is the dot
product of the head's output with the gradient there (the input of the output projection `attn.o`). Scores
are normalised per layer (L2), the lowest are removed across all layers, and every layer keeps at least one
head. Removing a head deletes its rows of q, k and v and its columns of o, so the model is smaller and
faster; `config.layer_heads` records each layer's count, so `damoxing.load` rebuilds the same shape.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import torch
import torch.nn.utils.prune as torch_prune
from torch import nn

from ..config import check_range
from ..errors import ConfigError
from ..layers import MultiHeadAttention
from ..models.swap import set_module


# ---------------------------------------------------------------------- unstructured
def prunable_linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The body's Linear layers (the task head stays whole)."""
    return [
        (n, m)
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and not (n == "head" or n.startswith("head."))
    ]


def magnitude_prune(model: nn.Module, sparsity: float) -> int:
    """Zero the `sparsity` fraction of the body's Linear weights with the smallest |w|, ranked across all
    layers at once; returns how many weights are zero. Masks stay until `make_permanent`."""
    check_range("prune.sparsity", sparsity, 0.0, 1.0)
    layers = [m for _, m in prunable_linears(model)]
    torch_prune.global_unstructured(
        [(m, "weight") for m in layers], pruning_method=torch_prune.L1Unstructured, amount=sparsity
    )
    return sum(int((m.weight_mask == 0).sum()) for m in layers)


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold every pruning mask into its weight (plain Parameters again, zeros where pruned)."""
    for _, m in prunable_linears(model):
        if torch_prune.is_pruned(m):
            torch_prune.remove(m, "weight")
    return model


def sparsity_of(model: nn.Module) -> float:
    """Fraction of the body's Linear weights that are zero."""
    weights = [m.weight for _, m in prunable_linears(model)]
    return sum(int((w == 0).sum()) for w in weights) / max(1, sum(w.numel() for w in weights))


# ---------------------------------------------------------------------- attention heads
def attention_layers(model: nn.Module) -> list[MultiHeadAttention]:
    return [block.attn for block in model.blocks]


def head_importance(
    model: nn.Module, batches: Iterable[dict], loss: Callable[[nn.Module, dict], torch.Tensor], normalize: bool = True
) -> torch.Tensor:
    """(layers, heads) importance: sum over examples of |dL/d xi_h|, each layer's row scaled to unit L2 norm.

    `loss(model, batch)` returns a scalar per example summed (so each example's gradient is its own).
    Pruned-away heads (a layer with fewer heads) score -inf in their missing columns.
    """
    attns = attention_layers(model)
    width = max(a.heads for a in attns)
    scores = torch.full((len(attns), width), float("-inf"))
    for i, a in enumerate(attns):
        scores[i, : a.heads] = 0.0
    captured: dict[int, torch.Tensor] = {}

    def keep_input(i):
        def hook(module, args):
            args[0].retain_grad()
            captured[i] = args[0]  # (B, T, H * d): the heads' outputs, concatenated

        return hook

    hooks = [a.o.register_forward_pre_hook(keep_input(i)) for i, a in enumerate(attns)]
    was_training = model.training
    model.eval()  # no dropout: the scores describe the model as it runs
    try:
        for batch in batches:
            model.zero_grad(set_to_none=True)
            loss(model, batch).backward()
            for i, a in enumerate(attns):
                out, grad = captured[i], captured[i].grad
                B, T = out.shape[:2]
                per_head = (out * grad).view(B, T, a.heads, a.head_dim).sum(dim=(1, 3))  # (B, H): dL/d xi per example
                scores[i, : a.heads] += per_head.abs().sum(0).detach()
    finally:
        for h in hooks:
            h.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    if normalize:
        finite = torch.where(scores.isfinite(), scores, torch.zeros_like(scores))
        scores = scores / finite.norm(dim=1, keepdim=True).clamp(min=1e-12)
    return scores


def heads_to_keep(scores: torch.Tensor, fraction: float) -> list[list[int]]:
    """Per layer, the heads kept when the `fraction` of all heads with the lowest scores goes (>= 1 per layer)."""
    check_range("prune.heads", fraction, 0.0, 1.0)
    alive = [(i, h) for i in range(scores.shape[0]) for h in range(scores.shape[1]) if scores[i, h].isfinite()]
    n_remove = round(fraction * len(alive))
    keep = {i: {h for j, h in alive if j == i} for i in range(scores.shape[0])}
    for i, h in sorted(alive, key=lambda ih: float(scores[ih])):  # least important first
        if n_remove == 0:
            break
        if len(keep[i]) > 1:
            keep[i].discard(h)
            n_remove -= 1
    return [sorted(keep[i]) for i in range(scores.shape[0])]


def _rows(linear: nn.Linear, index: torch.Tensor) -> nn.Linear:
    """A Linear with only the output rows `index`."""
    new = nn.Linear(
        linear.in_features,
        len(index),
        bias=linear.bias is not None,
        device=linear.weight.device,
        dtype=linear.weight.dtype,
    )
    with torch.no_grad():
        new.weight.copy_(linear.weight[index])
        if linear.bias is not None:
            new.bias.copy_(linear.bias[index])
    return new


def _columns(linear: nn.Linear, index: torch.Tensor) -> nn.Linear:
    """A Linear that reads only the inputs `index` (the bias is unchanged)."""
    new = nn.Linear(
        len(index),
        linear.out_features,
        bias=linear.bias is not None,
        device=linear.weight.device,
        dtype=linear.weight.dtype,
    )
    with torch.no_grad():
        new.weight.copy_(linear.weight[:, index])
        if linear.bias is not None:
            new.bias.copy_(linear.bias)
    return new


def remove_heads(model: nn.Module, keep: list[list[int]]) -> None:
    """Physically keep only heads `keep[layer]` in each layer; sets config.layer_heads."""
    attns = attention_layers(model)
    if len(keep) != len(attns):
        raise ConfigError(f"prune: {len(keep)} head lists for {len(attns)} layers")
    for i, (a, heads) in enumerate(zip(attns, keep)):
        if a.kv_heads != a.heads:
            raise ConfigError(
                "prune.heads: grouped-query attention shares key/value heads between query heads; "
                "head pruning supports one key/value head per query head"
            )
        if not heads or any(not 0 <= h < a.heads for h in heads):
            raise ConfigError(f"prune: layer {i} must keep between 1 and {a.heads} of its heads, got {heads}")
        d = a.head_dim
        index = torch.cat([torch.arange(h * d, (h + 1) * d) for h in heads]).to(a.q.weight.device)
        name = f"blocks.{i}.attn"
        for part in ("q", "k", "v"):
            set_module(model, f"{name}.{part}", _rows(getattr(a, part), index))
        set_module(model, f"{name}.o", _columns(a.o, index))
        a.heads = a.kv_heads = len(heads)
    counts = tuple(a.heads for a in attns)
    full = model.config.heads
    model.config = dataclasses.replace(model.config, layer_heads=() if set(counts) == {full} else counts)


def prune_heads(model: nn.Module, fraction: float, scores: torch.Tensor) -> list[list[int]]:
    """Remove the `fraction` of heads with the lowest importance `scores`; returns the heads kept per layer."""
    keep = heads_to_keep(scores, fraction)
    remove_heads(model, keep)
    return keep
