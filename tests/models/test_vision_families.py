"""Each image family (ViT, VGG-style CNN, MLP) learns a small batch by heart, and its surface is the text one."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from damoxing.models import create_model, preset
from damoxing.models.base import ModelBase

SMALL = {
    "vit-tiny": {"dim": 32, "layers": 2, "heads": 4, "mlp_dim": 64},
    "vgg-mini": {},
    "mlp-small": {"hidden": (64, 32)},
}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_each_family_overfits_a_small_batch(name):
    torch.manual_seed(0)
    model = create_model(preset(name, head="sequence", num_labels=4, **SMALL[name]))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 1, 28, 28, generator=g)  # noise images with arbitrary labels: only memorising works
    y = torch.randint(0, 4, (16,), generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        logits = model(x)
    assert (logits.argmax(-1) == y).all(), f"{name}: {int((logits.argmax(-1) == y).sum())}/16 after training"
    assert torch.nn.functional.cross_entropy(logits, y) < 0.1


@pytest.mark.parametrize("name", sorted(SMALL))
def test_reset_head_and_features_surface(name):
    torch.manual_seed(0)
    model = create_model(preset(name, **SMALL[name]))
    assert isinstance(model, ModelBase) and model.config.head == "none"
    model.reset_head(7)
    model.double()  # forward may take a shorter road (a ViT's [CLS] head): equal up to float64 summation order
    x = torch.randn(2, 1, 28, 28, dtype=torch.float64)
    with torch.no_grad():
        hidden = model.forward_features(x)
        assert model.forward_head(hidden).shape == (2, 7)
        assert model.pool(hidden).shape == (2, model.config.dim)
        torch.testing.assert_close(model(x), model.forward_head(hidden), rtol=0, atol=1e-10)
    assert model.config.head == "sequence" and model.config.num_labels == 7


def test_vit_mean_pooling_and_sinusoidal_positions():
    torch.manual_seed(0)
    config = preset(
        "vit-tiny", dim=32, layers=1, heads=4, mlp_dim=64, position="sinusoidal", class_token=False, pooling="mean"
    )
    model = create_model(config).eval()
    assert "embed.positions" not in model.state_dict()  # a fixed table, not a weight
    hidden = model.forward_features(torch.randn(2, 1, 28, 28))
    assert hidden.shape == (2, 49, 32) and torch.allclose(model.pool(hidden), hidden.mean(1))


@pytest.mark.parametrize("key, value", [("patch_size", 5), ("pooling", "last"), ("position", "rope")])
def test_vit_config_errors_name_the_key(key, value):
    with pytest.raises(ValueError, match=f"model.{'image_size' if key == 'patch_size' else key}"):
        dataclasses.replace(preset("vit-tiny"), **{key: value})


def test_mlp_says_what_input_size_it_takes():
    model = create_model(preset("mlp-small"))
    with pytest.raises(ValueError, match="784 inputs per example, got 1024"):
        model(torch.randn(1, 1, 32, 32))


def test_patch_embedding_is_a_linear_map_of_each_flattened_patch():
    from damoxing.layers import PatchEmbedding

    torch.manual_seed(0)
    embed = PatchEmbedding(channels=3, dim=8, patch_size=4).double()
    x = torch.randn(2, 3, 8, 12, dtype=torch.float64)
    patches = x.unfold(2, 4, 4).unfold(3, 4, 4)  # (B, C, 2, 3, 4, 4)
    flat = patches.permute(0, 2, 3, 1, 4, 5).reshape(2, 6, 3 * 16)  # row-major patches, (C, p, p) flattened
    expected = flat @ embed.proj.weight.reshape(8, -1).T + embed.proj.bias
    assert torch.allclose(embed(x), expected, atol=1e-12)


def test_2d_sinusoidal_table_is_row_then_column_halves():
    from damoxing.layers import sinusoidal_2d_table, sinusoidal_table

    table = sinusoidal_2d_table(3, 5, 8)
    rows, cols = sinusoidal_table(3, 4), sinusoidal_table(5, 4)
    assert table.shape == (15, 8)
    for r in range(3):
        for c in range(5):
            assert torch.equal(table[r * 5 + c], torch.cat([rows[r], cols[c]]))
