"""layers.dropout: PyTorch's dropout, with a mask drawn four elements per 64-bit draw."""

import math

import pytest
import torch

from damoxing.layers import MultiHeadAttention
from damoxing.layers.dropout import LEVELS, Dropout, dropout


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_the_drop_rate_and_the_scale(p):
    torch.manual_seed(0)
    n = 1 << 20
    y = dropout(torch.ones(n), p)
    drop = round(p * LEVELS)
    rate = drop / LEVELS
    assert abs(rate - p) <= 0.5 / LEVELS
    dropped = (y == 0).double().mean().item()
    # a binomial count: 6 standard deviations hold with probability 1 - 2e-9
    assert abs(dropped - rate) <= 6 * math.sqrt(rate * (1 - rate) / n)
    scale = torch.tensor(LEVELS / (LEVELS - drop), dtype=torch.float32)
    assert torch.equal(torch.unique(y), torch.tensor([0.0, scale.item()]))  # kept ones scaled, exactly


def test_elements_are_dropped_independently():
    # the four 16-bit numbers of one 64-bit draw must not drop together: neighbours are as independent as any pair
    torch.manual_seed(1)
    n, p = 1 << 20, 0.5
    kept = dropout(torch.ones(n), p) != 0
    for lag in (1, 2, 3, 4, 5):
        both = (kept[:-lag] & kept[lag:]).double().mean().item()
        assert abs(both - 0.25) <= 6 * math.sqrt(0.25 * 0.75 / n), lag


def test_seeded_training_mode_gradient_and_dtype():
    x = torch.randn(4, 7, 33, requires_grad=True)
    torch.manual_seed(3)
    y = dropout(x, 0.3)
    torch.manual_seed(3)
    assert torch.equal(dropout(x, 0.3), y)  # reproducible from the seed (and so on resume)
    y.sum().backward()
    assert torch.equal(x.grad, (y != 0).float() * (LEVELS / (LEVELS - round(0.3 * LEVELS))))
    assert dropout(x.bfloat16(), 0.3).dtype == torch.bfloat16
    module = Dropout(0.3).eval()
    assert module(x) is x and dropout(x, 0.0) is x
    with pytest.raises(ValueError):
        Dropout(1.5)


def test_attention_training_path_equals_sdpa_when_nothing_is_dropped():
    # the CPU training path computes attention itself (to draw the mask above); with a drop rate that rounds
    # to 0 it must give SDPA's result: float64, grouped heads and a padding mask
    torch.manual_seed(0)
    attn = MultiHeadAttention(32, 4, kv_heads=2, dropout=1e-9).double()
    x = torch.randn(2, 9, 32, dtype=torch.float64)
    mask = torch.ones(2, 1, 1, 9, dtype=torch.bool)
    mask[1, ..., 6:] = False
    attn.train()
    ours = attn(x, mask=mask)
    attn.eval()  # dropout off: SDPA
    ref = attn(x, mask=mask)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
