"""Shared layers against their definitions: positions, causality, padding, GQA, KV cache, attention recording."""

from __future__ import annotations

import math

import pytest
import torch

from damoxing import DecoderConfig, EncoderConfig, create_model
from damoxing.layers import MultiHeadAttention, RotaryEmbedding, apply_rotary, sinusoidal_table

GPT2_STYLE = {"vocab_size": 64, "dim": 32, "layers": 2, "heads": 4, "mlp_dim": 64, "max_positions": 32}
LLAMA_STYLE = dict(
    GPT2_STYLE,
    position="rope",
    norm="rmsnorm",
    mlp="swiglu",
    kv_heads=2,
    attention_bias=False,
    mlp_bias=False,
    tie_embeddings=False,
)
DECODERS = {"gpt2": GPT2_STYLE, "llama": LLAMA_STYLE}
EPS32 = torch.finfo(torch.float32).eps
# The equivalence checks run in float64 (eps 2.2e-16), where two ways of computing the same thing differ only in
# summation order: <= n * eps * sum|terms| per sum, n <= 64 here, through 2 layers of outputs |y| <= ~10.
# 1e-10 is > 1000x that bound and < 1e-3 of any float32 rounding (1.2e-7), let alone a real difference.
F64_TOL = 1e-10


def decoder(style: str, **changes):
    torch.manual_seed(0)
    return create_model(DecoderConfig(**{**DECODERS[style], **changes})).double().eval()


def encoder(**changes):
    torch.manual_seed(0)
    return (
        create_model(
            EncoderConfig(
                **{
                    "vocab_size": 64,
                    "dim": 32,
                    "layers": 2,
                    "heads": 4,
                    "mlp_dim": 64,
                    "max_positions": 32,
                    **changes,
                }
            )
        )
        .double()
        .eval()
    )


def test_sinusoidal_table_is_the_papers_formula():
    length, dim = 50, 16
    table = sinusoidal_table(length, dim)
    for pos in range(length):
        for i in range(dim // 2):
            angle = pos / 10000 ** (2 * i / dim)  # the table is float64 rounded once to float32: <= eps/2 of |v| <= 1
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=EPS32 / 2)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=EPS32 / 2)


def test_rope_is_a_complex_rotation_of_pairs_i_and_i_plus_half():
    d, base, T = 8, 10000.0, 6
    torch.manual_seed(0)
    x = torch.randn(1, 2, T, d)
    cos, sin = RotaryEmbedding(d, base)(torch.arange(T)[None])
    out = apply_rotary(x, cos, sin)
    # float32 rope: the angle t * theta (theta <= 1) is rounded twice (<= t * eps rad), cos and sin are within 1 ulp,
    # and x * cos + y * sin rounds 3 times: each output is within (t + 5) * eps * |(x, y)| of the exact rotation
    size = x.abs().max().item() * math.sqrt(2)
    for t in range(T):
        for i in range(d // 2):
            z = complex(x[0, 1, t, i], x[0, 1, t, i + d // 2]) * complex(
                math.cos(t * base ** (-2 * i / d)), math.sin(t * base ** (-2 * i / d))
            )
            assert out[0, 1, t, i].item() == pytest.approx(z.real, abs=(t + 5) * EPS32 * size)
            assert out[0, 1, t, i + d // 2].item() == pytest.approx(z.imag, abs=(t + 5) * EPS32 * size)
    # a rotation: norms kept (cos^2 + sin^2 = 1 within 4 eps, the norm's sum of d squares within d eps)...
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1), rtol=(d + 4) * EPS32, atol=0)
    # ...and q.k depends only on the distance between positions: angles up to 13 rad rounded (13 eps each, q and k),
    # the rotations (4 eps), the dot product's sum of d terms (d eps), all relative to |q| |k|
    q, k = torch.randn(d), torch.randn(d)
    rot = lambda v, p: apply_rotary(v.view(1, 1, 1, d), *RotaryEmbedding(d, base)(torch.tensor([[p]]))).flatten()
    bound = 2 * (2 * 13 + 4 + d) * EPS32 * (q.norm() * k.norm()).item()
    assert (rot(q, 5) @ rot(k, 2)).item() == pytest.approx((rot(q, 13) @ rot(k, 10)).item(), abs=bound)


@pytest.mark.parametrize("style", ["gpt2", "llama"])
def test_changing_a_future_token_never_changes_earlier_outputs(style):
    model = decoder(style)
    ids = torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(1))
    changed = ids.clone()
    changed[:, 6:] = (changed[:, 6:] + 7) % 64
    with torch.no_grad():
        a, b = model(ids), model(changed)
    torch.testing.assert_close(a[:, :6], b[:, :6], rtol=0, atol=F64_TOL)
    assert (a[:, 6:] - b[:, 6:]).abs().max() > 1e-3  # the changed tokens' own outputs do change


def test_encoder_padding_never_changes_real_positions():
    model = encoder()
    ids = torch.randint(1, 64, (1, 7), generator=torch.Generator().manual_seed(2))
    padded = torch.cat([ids, torch.zeros(1, 5, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 7), torch.zeros(1, 5)], dim=1).long()
    with torch.no_grad():
        alone, with_pad = model(ids), model(padded, mask)
    torch.testing.assert_close(alone, with_pad[:, :7], rtol=0, atol=F64_TOL)
    padded[:, 7:] = 9  # whatever sits in the padding is ignored
    with torch.no_grad():
        torch.testing.assert_close(model(padded, mask)[:, :7], alone, rtol=0, atol=F64_TOL)


@pytest.mark.parametrize("style", ["gpt2", "llama"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_decoder_padding_never_changes_real_positions(style, side):
    model = decoder(style)
    ids = torch.randint(0, 64, (1, 6), generator=torch.Generator().manual_seed(3))
    pad = torch.full((1, 4), 5)
    padded = torch.cat([ids, pad] if side == "right" else [pad, ids], dim=1)
    mask = torch.cat(
        [torch.ones(1, 6), torch.zeros(1, 4)] if side == "right" else [torch.zeros(1, 4), torch.ones(1, 6)], dim=1
    ).long()
    positions = (mask.cumsum(1) - 1).clamp(min=0)  # real tokens keep positions 0..5 under left padding too
    with torch.no_grad():
        alone = model(ids)
        out = model(padded, mask, position_ids=positions)
    real = out[:, :6] if side == "right" else out[:, 4:]
    torch.testing.assert_close(alone, real, rtol=0, atol=F64_TOL)


def test_grouped_query_attention_equals_mha_with_repeated_kv():
    torch.manual_seed(0)
    gqa = MultiHeadAttention(32, heads=4, kv_heads=2, causal=True).double()
    mha = MultiHeadAttention(32, heads=4, causal=True).double()
    d = 8
    with torch.no_grad():
        for name in ("q", "o"):
            getattr(mha, name).load_state_dict(getattr(gqa, name).state_dict())
        for name in ("k", "v"):  # kv head j serves query heads 2j and 2j+1
            w = getattr(gqa, name).weight.view(2, d, 32).repeat_interleave(2, dim=0).reshape(32, 32)
            b = getattr(gqa, name).bias.view(2, d).repeat_interleave(2, dim=0).reshape(32)
            getattr(mha, name).weight.copy_(w)
            getattr(mha, name).bias.copy_(b)
        x = torch.randn(2, 5, 32, dtype=torch.float64)
        torch.testing.assert_close(gqa(x), mha(x), rtol=0, atol=F64_TOL)


@pytest.mark.parametrize("style", ["gpt2", "llama"])
def test_kv_cache_incremental_decoding_equals_full_forward(style):
    model = decoder(style)
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache()
        steps = [model(ids[:, :5], cache=cache)]  # a prompt, then one token at a time
        for t in range(5, 12):
            steps.append(model(ids[:, t : t + 1], cache=cache))
    assert cache.length == 12
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=0, atol=F64_TOL)


@pytest.mark.parametrize("make", [lambda: decoder("llama"), lambda: encoder()])
def test_recorded_attention_probabilities_sum_to_one_and_match_the_fast_path(make):
    model = make()
    ids = torch.randint(1, 64, (2, 8), generator=torch.Generator().manual_seed(5))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 6:] = 0
    with torch.no_grad():
        fast = model(ids, mask)
        mods = model.record_attention(True)
        slow = model(ids, mask)
    assert len(mods) == 2
    for m in mods:
        assert m.probs.shape == (2, 4, 8, 8)
        assert m.probs.dtype == torch.float64  # recorded in the model's dtype, so both paths below are float64
        torch.testing.assert_close(m.probs.sum(-1), torch.ones(2, 4, 8, dtype=torch.float64), rtol=0, atol=F64_TOL)
        assert m.probs[1, :, :, 6:].abs().max() == 0  # padding gets no attention
        if model.config.__class__ is DecoderConfig:
            assert m.probs[0].triu(1).abs().max() == 0  # causal: nothing from the future
    torch.testing.assert_close(fast, slow, rtol=0, atol=F64_TOL)
    model.record_attention(False)
    assert all(m.probs is None for m in mods)


def test_training_over_few_keys_takes_the_plain_products_and_equals_sdpa(monkeypatch):
    """Training on a CPU over <= SHORT_KEYS keys computes scores, softmax and values as plain products (faster
    than SDPA's CPU kernel there); outputs and gradients equal SDPA's, padding mask included (float64)."""
    from damoxing.layers import attention

    torch.manual_seed(0)
    attn = MultiHeadAttention(32, 4).double()
    x = torch.randn(3, 10, 32, dtype=torch.float64)
    keep = torch.ones(3, 10, dtype=torch.bool)
    keep[1, 6:] = False
    mask = keep[:, None, None, :]
    calls = []
    plain = attention.MultiHeadAttention._attend_math
    monkeypatch.setattr(attention.MultiHeadAttention, "_attend_math", lambda *a: calls.append(1) or plain(*a))

    def run():
        out = attn(x, mask=mask)
        grads = torch.autograd.grad((out * torch.arange(32, dtype=out.dtype)).sum(), list(attn.parameters()))
        return out, grads

    out, grads = run()
    assert calls == [1]  # the plain products
    monkeypatch.setattr(attention, "SHORT_KEYS", 0)
    ref, ref_grads = run()
    assert calls == [1]  # SDPA this time
    torch.testing.assert_close(out, ref, rtol=0, atol=F64_TOL)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=0, atol=F64_TOL)


def test_a_pre_norm_block_asked_for_its_first_positions_computes_exactly_those():
    """`queries=n`: the first n rows of the full block's output, and the same gradients from a loss on them."""
    from torch import nn

    from damoxing.layers import MLP, PreNormBlock

    torch.manual_seed(0)
    block = PreNormBlock(MultiHeadAttention(32, 4), MLP(32, 64), nn.LayerNorm(32), nn.LayerNorm(32)).double()
    x = torch.randn(2, 9, 32, dtype=torch.float64)
    keep = torch.ones(2, 9, dtype=torch.bool)
    keep[1, 7:] = False
    mask = keep[:, None, None, :]
    full = block(x, mask=mask)[:, :2]
    part = block(x, mask=mask, queries=2)
    assert part.shape == (2, 2, 32)
    torch.testing.assert_close(part, full, rtol=0, atol=F64_TOL)
    weights = torch.randn(2, 2, 32, dtype=torch.float64)
    g_full = torch.autograd.grad((full * weights).sum(), list(block.parameters()))
    g_part = torch.autograd.grad((part * weights).sum(), list(block.parameters()))
    for a, b in zip(g_part, g_full):
        torch.testing.assert_close(a, b, rtol=0, atol=F64_TOL)
    causal = PreNormBlock(MultiHeadAttention(32, 4, causal=True), MLP(32, 64), nn.LayerNorm(32), nn.LayerNorm(32))
    with pytest.raises(ValueError, match="non-causal"):
        causal(x.float(), queries=2)


def test_patch_embedding_is_the_convolution_it_stores():
    """The patches cut out by a reshape and the convolution's weight as a linear map: the convolution's sums
    (float64: only the order of 16-48 terms differs), inputs and weights alike, gradients included."""
    from damoxing.layers import PatchEmbedding

    torch.manual_seed(0)
    for channels, patch, side in ((1, 4, 28), (3, 16, 32), (3, 2, 6)):
        layer = PatchEmbedding(channels, 8, patch).double()
        pixels = torch.randn(2, channels, side, side, dtype=torch.float64, requires_grad=True)
        ours = layer(pixels)  # (B, N, dim)
        conv = torch.nn.functional.conv2d(pixels, layer.proj.weight, layer.proj.bias, stride=patch)
        theirs = conv.flatten(2).transpose(1, 2)  # (B, N, dim), row-major patches
        assert ours.shape == (2, (side // patch) ** 2, 8)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
        g = torch.randn_like(ours)
        grads = torch.autograd.grad(ours, (pixels, layer.proj.weight), g)
        expected = torch.autograd.grad(theirs, (pixels, layer.proj.weight), g)
        for a, b in zip(grads, expected):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
