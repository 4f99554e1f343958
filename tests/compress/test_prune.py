"""Pruning: magnitude masks made permanent; heads ranked by importance and physically removed."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import damoxing
from damoxing.compress.prune import (
    head_importance,
    heads_to_keep,
    magnitude_prune,
    make_permanent,
    prune_heads,
    remove_heads,
    sparsity_of,
)
from damoxing.errors import ConfigError

from .conftest import tiny_decoder, tiny_encoder


def batches(n: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [
        {"input_ids": torch.randint(1, 96, (4, 10), generator=g), "labels": torch.randint(0, 3, (4,), generator=g)}
        for _ in range(n)
    ]


def classification_loss(model, batch):
    return F.cross_entropy(model(batch["input_ids"]), batch["labels"], reduction="sum")


def test_magnitude_pruning_zeroes_the_smallest_weights_and_saves_plain(tmp_path):
    model = tiny_encoder()
    smallest = (
        torch.cat(
            [
                m.weight.detach().abs().flatten()
                for n, m in model.named_modules()
                if isinstance(m, torch.nn.Linear) and not n.startswith("head")
            ]
        )
        .sort()
        .values
    )
    zeroed = magnitude_prune(model, 0.5)
    assert zeroed == round(0.5 * len(smallest))
    assert "blocks.0.attn.q.weight_mask" in model.state_dict()
    make_permanent(model)
    assert not any(k.endswith(("_mask", "_orig")) for k in model.state_dict())
    assert abs(sparsity_of(model) - 0.5) < 1 / len(smallest) + 1e-9
    kept = model.blocks[0].attn.q.weight.detach().abs()
    assert kept[kept > 0].min() >= smallest[zeroed - 1]  # nothing smaller than the cut survived
    damoxing.save(model, None, tmp_path)
    loaded = damoxing.load(tmp_path)
    assert sparsity_of(loaded) == sparsity_of(model)


def gated_importance(model, data) -> torch.Tensor:
    """The definition: |dL/d xi_h| per example, with an explicit gate xi on each head's output."""
    attns = [b.attn for b in model.blocks]
    gates = [torch.ones(a.heads, dtype=torch.float64, requires_grad=True) for a in attns]
    hooks = [
        a.o.register_forward_pre_hook(
            lambda m, args, a=a, g=g: (args[0] * g.repeat_interleave(a.head_dim).to(args[0].dtype),)
        )
        for a, g in zip(attns, gates)
    ]
    scores = torch.zeros(len(attns), attns[0].heads, dtype=torch.float64)
    for batch in data:
        for row in range(batch["input_ids"].shape[0]):
            one = {k: v[row : row + 1] for k, v in batch.items()}
            grads = torch.autograd.grad(classification_loss(model, one), gates)
            scores += torch.stack(grads).abs()
    for h in hooks:
        h.remove()
    return scores


def test_head_importance_is_the_gradient_of_a_gate_on_each_head():
    model = tiny_encoder().double()
    data = [{k: v[:2] for k, v in b.items()} for b in batches(2)]
    got = head_importance(model, data, classification_loss, normalize=False)
    assert torch.allclose(got.double(), gated_importance(model, data), rtol=1e-6, atol=1e-12)
    assert got.min() > 0


def test_half_the_heads_removed_shrinks_the_model_and_equals_masking_them(tmp_path):
    model = tiny_encoder().double()
    ids = torch.randint(1, 96, (2, 8), generator=torch.Generator().manual_seed(1))
    scores = head_importance(model, batches(), classification_loss)
    keep = heads_to_keep(scores, 0.5)
    assert sum(len(k) for k in keep) == 4  # 8 heads, half removed
    # the reference: the full model with the removed heads' outputs set to zero
    d = model.blocks[0].attn.head_dim
    hooks = [
        b.attn.o.register_forward_pre_hook(
            lambda m, args, k=k: (args[0] * torch.tensor([float(h in k) for h in range(4)]).repeat_interleave(d),)
        )
        for b, k in zip(model.blocks, keep)
    ]
    with torch.no_grad():
        masked = model(ids)
    for h in hooks:
        h.remove()
    before = model.num_parameters()
    remove_heads(model, keep)
    removed = 4 * (3 * (d * 32 + d) + 32 * d)  # q, k, v rows with their biases, and o's columns
    assert before - model.num_parameters() == removed
    assert model.config.layer_heads == tuple(len(k) for k in keep)
    with torch.no_grad():
        pruned = model(ids)
    assert torch.allclose(pruned, masked, rtol=0, atol=1e-12)
    damoxing.save(model.float(), None, tmp_path)
    loaded = damoxing.load(tmp_path)
    assert loaded.config.layer_heads == model.config.layer_heads
    assert loaded.num_parameters() == model.num_parameters()
    with torch.no_grad():
        assert torch.equal(loaded(ids), model(ids))


def test_decoder_heads_prune_and_load(tmp_path):
    model = tiny_decoder(kv_heads=None)
    data = [{"input_ids": b["input_ids"]} for b in batches(2)]

    def lm_loss(m, batch):
        logits = m(batch["input_ids"])
        return F.cross_entropy(logits[:, :-1].flatten(0, 1), batch["input_ids"][:, 1:].flatten(), reduction="sum")

    keep = prune_heads(model, 0.5, head_importance(model, data, lm_loss))
    assert sum(map(len, keep)) == 4
    damoxing.save(model, None, tmp_path)
    loaded = damoxing.load(tmp_path)
    ids = data[0]["input_ids"]
    with torch.no_grad():
        assert torch.equal(loaded(ids), model(ids))


def test_every_layer_keeps_a_head():
    scores = torch.tensor([[0.1, 0.2], [0.9, 0.8]])
    assert heads_to_keep(scores, 1.0) == [[1], [0]]


def test_grouped_query_attention_is_refused():
    model = tiny_decoder()  # kv_heads=2 of 4
    with pytest.raises(ConfigError, match="grouped-query"):
        remove_heads(model, [[0, 1], [0, 1]])


def test_layer_heads_config_is_checked():
    with pytest.raises(ConfigError, match="model.layer_heads"):
        damoxing.preset("bert-tiny", layer_heads=(2,))
