"""Quantized layers against their float layers, within error bounds derived from their scales.

Weight-only layers (int8, int4) run the CPU kernels with bf16 activations and bf16 scales, so the bound
of an output y_n = sum_k x_k w_nk is, with U = 2^-9 the unit roundoff of bf16:
    sum_k |x_k| * (scale_nk / 2                    rounding the weight to its code
                   + e_nk)                         the kernel's bf16 copy of the scale (and int4 zero)
    + (2U + K 2^-24) * sum_k |x_k| (|w_nk| + e_nk)  bf16 activations, bf16 output, fp32 accumulation
The dynamic layer quantizes its input per call with step s_x over the input's range (7 bits):
    s_x * sum_k |w_nk| + scale_n / 2 * sum_k |x_k|, plus float32 rounding.
"""

from __future__ import annotations

import copy
import json
import warnings

import gguf
import numpy as np
import pytest
import torch
from torch import nn

import damoxing
from damoxing.compress.quantize import (
    DynamicInt8Linear,
    Int4Linear,
    Int8Embedding,
    Int8Linear,
    quantize,
)
from damoxing.errors import ConfigError
from damoxing.inference import GenerationConfig, generate
from damoxing.io.gguf import decode_blocks, read_gguf

from .conftest import tiny_decoder, tiny_encoder, write_gguf

U = 2.0**-9


def scale_per_weight(layer) -> torch.Tensor:
    """(N, K) float64: the scale each weight was rounded with."""
    group = layer.in_features // layer.weight_scale.shape[1]
    return layer.weight_scale.double().repeat_interleave(group, dim=1)


def kernel_scale_error(layer) -> torch.Tensor:
    """(N, K) bound on |kernel weight - dequantized weight| from the kernel's bf16 scales (and zeros)."""
    w = layer.dequantize().double()
    if isinstance(layer, Int4Linear):
        s = scale_per_weight(layer)
        m = layer.weight_min.double().repeat_interleave(layer.group_size, dim=1)
        codes = layer.codes().double()
        return ((codes - 8).abs() * s + (m + 8 * s).abs()) * U * (1 + 2.0**-15)
    return w.abs() * U  # code * bf16(scale): one rounding of the scale


def weight_only_bound(layer, x: torch.Tensor, weight_error: torch.Tensor) -> torch.Tensor:
    """(M, N) bound of a weight-only layer's output error against the float layer (see the module docstring)."""
    ax = x.double().abs()
    e = kernel_scale_error(layer)
    w = layer.dequantize().double().abs() + e
    k = layer.in_features
    return ax @ (weight_error + e).T + (2 * U + k * 2.0**-24) * (ax @ w.T) * (1 + 2.0**-7)


def float64_reference(linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    b = linear.bias.double() if linear.bias is not None else 0
    return x.double() @ linear.weight.double().T + b


@pytest.mark.parametrize("kind, group", [("int8", None), ("int8", 32), ("int4", 32), ("int4", 64)])
@pytest.mark.parametrize("shape", [(128, 64), (40, 96)], ids=["kernel", "fallback"])  # 40 rows: no int4 kernel
def test_weight_only_layer_within_bound_from_its_scales(kind, group, shape):
    torch.manual_seed(0)
    out_features, in_features = shape
    if group is not None and in_features % group:
        pytest.skip(f"{in_features} inputs do not split into groups of {group}")
    lin = nn.Linear(in_features, out_features)
    layer = Int8Linear.from_float(lin, group) if kind == "int8" else Int4Linear.from_float(lin, group)
    x = torch.randn(5, 3, in_features)
    # rounding to codes moves no weight by more than half its scale
    error = (layer.dequantize().double() - lin.weight.double()).abs()
    half = scale_per_weight(layer) / 2
    assert (error <= half * (1 + 1e-6)).all()
    with torch.no_grad():
        y = layer(x)
    assert y.shape == (5, 3, out_features) and y.dtype == torch.float32
    diff = (y.double() - float64_reference(lin, x)).abs().view(-1, out_features)
    bound = weight_only_bound(layer, x.view(-1, in_features), half)
    assert (diff <= bound).all(), (diff / bound).max()
    assert diff.max() > 0  # a real quantization, not the float layer


def test_int8_groups_run_on_two_int4_planes_with_exact_codes():
    """Grouped int8 goes through the int4 kernel as 16 * hi + lo; it must equal the dequantized product."""
    torch.manual_seed(1)
    lin = nn.Linear(64, 32, bias=False)
    layer = Int8Linear.from_float(lin, group_size=32)
    assert layer._planes is not None  # the kernel path, not the fallback
    x = torch.randn(4, 64)
    with torch.no_grad():
        y = layer(x).double()
    exact = x.double() @ layer.dequantize().double().T
    bound = weight_only_bound(layer, x, torch.zeros(32, 64, dtype=torch.float64))
    assert ((y - exact).abs() <= bound).all()


def test_dynamic_int8_within_bound_from_its_scales():
    torch.manual_seed(0)
    lin = nn.Linear(96, 48)
    layer = DynamicInt8Linear.from_float(lin)
    x = torch.randn(6, 96)
    with torch.no_grad():
        y = layer(x)
    w = layer.dequantize().double()
    step = (max(x.max().item(), 0) - min(x.min().item(), 0)) / 127  # the input's 7-bit step
    ax = x.double().abs()
    bound = (
        step * w.abs().sum(1)
        + ax.sum(1, keepdim=True) * layer.weight_scale.double().T / 2
        + 2.0**-20 * (ax @ w.abs().T + lin.bias.double().abs())
    )
    diff = (y.double() - float64_reference(lin, x)).abs()
    assert (diff <= bound).all(), (diff / bound).max()
    assert diff.max() > 0


def test_int8_embedding_rows_within_half_a_scale():
    torch.manual_seed(0)
    emb = nn.Embedding(50, 32)
    layer = Int8Embedding.from_float(emb)
    ids = torch.randint(0, 50, (3, 7))
    diff = (layer(ids).double() - emb(ids).double()).abs()
    half = layer.weight_scale[ids].double() / 2  # (3, 7, 1): one scale per row
    assert (diff <= half * (1 + 1e-6)).all() and diff.max() > 0


def test_layers_follow_to_and_keep_nn_linear_signature():
    lin = nn.Linear(64, 32)
    layer = Int4Linear.from_float(lin)
    x = torch.randn(2, 64)
    with torch.no_grad():
        before = layer(x)
        layer.to(torch.bfloat16)  # scales cast; the kernel tables are rebuilt from them
        after = layer(x.bfloat16())
    assert after.dtype == torch.bfloat16
    assert torch.allclose(after.float(), before, atol=0.05 * before.abs().max().item())


# ---------------------------------------------------------------------- GGUF blocks
@pytest.mark.parametrize("kind", ["Q8_0", "Q4_0", "Q4_1"])
def test_blocks_decode_like_the_gguf_package(kind):
    """Codes and scales read from the raw bytes give exactly gguf's own dequantization."""
    qtype = gguf.GGMLQuantizationType[kind]
    data = np.random.default_rng(0).standard_normal((16, 64)).astype(np.float32)
    raw = gguf.quants.quantize(data, qtype)
    blocks = decode_blocks(raw, kind, (16, 64))
    expected = gguf.quants.dequantize(raw, qtype).reshape(16, 64)
    assert torch.equal(blocks.dequantize(), torch.from_numpy(np.ascontiguousarray(expected, dtype=np.float32)))


def bf16(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.bfloat16).double()


def kernel_planes(layer: Int8Linear) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) float64 weights of grouped int8's two int4 planes as the kernel holds them (see Int8Linear.pack):
    code = 16 h + l with h = code >> 4 in -8..7 and l = code & 15; the planes are h * bf16(16 s) and
    (l - 8) * bf16(s) + bf16(8 s), bf16 being the kernel's copy of the scales and zeros."""
    s, group = layer.weight_scale.double(), layer.in_features // layer.groups
    per_weight = lambda t: t.repeat_interleave(group, dim=1)
    code = layer.weight.long()
    return (code >> 4) * per_weight(bf16(16 * s)), ((code & 15) - 8) * per_weight(bf16(s)) + per_weight(bf16(8 * s))


def first_order_logit_bound(model, twin, ids, seen: dict, lam: float = 6.0):
    """(B, T, V) bound on |logits of the kernel model - logits of its dequantized twin in float64|, and the latter.

    The two models differ only in their linear layers. Layer l computes, on its input x (in float64 here),
    y = bf16(bf16(bf16(x) @ H^T) + bf16(bf16(x) @ L^T)) with fp32 accumulation, H and L its planes with bf16
    scales (kernel_planes), while the twin computes x @ W^T. So y - x @ W^T =
        x @ (H + L - W)^T                              the scales' bf16 rounding: known, kept with its sign
      + (bf16(x) - x) @ (H + L)^T + three bf16 roundings of outputs    |each| <= U |value|
      + fp32 accumulation                              <= K 2^-24 |bf16(x)| @ (|H| + |L|)^T
    To first order the logits move by sum_l J_l (y_l - x_l @ W_l^T), J_l the float64 twin's Jacobian of the
    logits with respect to layer l's output. The known part is summed with its sign, the accumulation bound in
    absolute value; the roundings, as in the probabilistic analysis of Higham and Mary (2019), are independent
    and bounded, c_e * r_e with |r_e| <= 1 (a value rounded once, whichever layers read it: q, k, v and gate, up
    share their input; equal rows, repeated tokens, round alike), so by Hoeffding's inequality their sum exceeds
    lam * sqrt(sum c_e^2) with probability at most 2 exp(-lam^2 / 2): 3e-8 per logit at lam = 6, under 1e-4
    for all of them together. The remainder of the first-order expansion is second order in the perturbations:
    relative to the first-order term it is about their relative size, rho = max bound / max |logit|, so the
    bound is (1 + rho) times the first-order one."""
    names = list(seen)
    exact = copy.deepcopy(twin).double()

    def logits_with(*outputs_moved_by):
        moves = dict(zip(names, outputs_moved_by))
        hooks = [exact.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: o + moves[n]) for n in names]
        try:
            return exact(ids)
        finally:
            for h in hooks:
                h.remove()

    still = [torch.zeros(seen[n][1].shape, dtype=torch.float64) for n in names]
    with torch.no_grad():
        reference = logits_with(*still)
    with warnings.catch_warnings():  # functorch: no batching rule for SDPA's backward, so it loops (slower)
        warnings.filterwarnings("ignore", message="There is a performance drop")
        jacobians = torch.func.jacrev(logits_with, argnums=tuple(range(len(names))))(*still)
    count = reference.numel()
    known, squares, accumulation, roundings_of = [torch.zeros(count, dtype=torch.float64) for _ in range(3)] + [{}]
    for name, jacobian in zip(names, jacobians):
        layer, inp = model.get_submodule(name), seen[name][0]
        k, n = layer.in_features, layer.out_features
        x = inp.double().reshape(-1, k)  # (P, K): every position of every row
        j = jacobian.reshape(count, x.shape[0], n)  # (logits, P, N)
        hi, lo = kernel_planes(layer)
        known += (j * (x @ (hi + lo - layer.dequantize().double()).T)).sum((1, 2))
        xb = bf16(x)
        accumulation += (j.abs() * (k * 2.0**-24 * (xb.abs() @ (hi.abs() + lo.abs()).T))).sum((1, 2))
        rows, which = torch.unique(x, dim=0, return_inverse=True)  # equal rows round alike: one event each
        merged = torch.zeros(count, len(rows), n, dtype=torch.float64).index_add_(1, which, j)  # (logits, R, N)
        rb = bf16(rows)
        y_hi, y_lo = rb @ hi.T, rb @ lo.T  # (R, N)
        squares += ((merged * U) ** 2 * (y_hi**2 + y_lo**2 + (y_hi + y_lo) ** 2)).sum((1, 2))
        through = torch.einsum("irn,nk->irk", merged, hi + lo) * (U * rows.abs())  # bf16(x)'s roundings
        key = id(inp)  # one input tensor, one rounding of it, whichever layers read it
        roundings_of[key] = roundings_of.get(key, 0) + through
    squares += sum((c**2).sum((1, 2)) for c in roundings_of.values())
    first = known.abs() + lam * squares.sqrt() + accumulation
    rho = first.max() / reference.abs().max()
    return (first * (1 + rho)).view_as(reference), reference


def test_q8_0_gguf_runs_directly_within_the_bound_of_its_fp32_twin(q8_gguf):
    """Every layer of the Q8_0 model, run on its blocks by the int4 kernel (two planes), against the same layer of
    the dequantized fp32 model; then the logits, within a bound derived from the kernel's roundings and the
    twin's Jacobians (first_order_logit_bound)."""
    twin = damoxing.load(q8_gguf)
    model = damoxing.load(q8_gguf, quantized=True)
    assert all(isinstance(model.get_submodule(n), Int8Linear) for n in ("blocks.0.attn.q", "head.proj"))
    assert model.head.proj.weight is model.embed.weight  # the tied projection reads the embedding's codes
    layers = {n: m for n, m in model.named_modules() if isinstance(m, Int8Linear)}
    # every shape of the tiny model fits the int4 kernel (outputs a multiple of 16, blocks of 32): the planes
    # must be built, or a dequantizing fallback would pass every check below
    assert all(m.groups == m.in_features // 32 and m.out_features % 16 == 0 for m in layers.values())
    assert all(m._planes is not None and m._scale is None for m in layers.values())
    seen = {}
    hooks = [
        m.register_forward_hook(lambda m, inp, out, n=n: seen.__setitem__(n, (inp[0], out))) for n, m in layers.items()
    ]
    ids = torch.randint(0, 96, (2, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(ids)
        reference = twin(ids)
    for h in hooks:
        h.remove()
    assert len(seen) == 15
    for name, (x, y) in seen.items():
        layer, linear = model.get_submodule(name), twin.get_submodule(name)
        assert torch.equal(layer.dequantize(), linear.weight)  # the codes and scales, unchanged
        x2 = x.reshape(-1, layer.in_features)
        diff = (y.reshape(-1, layer.out_features).double() - float64_reference(linear, x2)).abs()
        assert (diff <= weight_only_bound(layer, x2, torch.zeros_like(linear.weight, dtype=torch.float64))).all()
    with torch.no_grad():
        emb_diff = (model.embed(ids) - twin.embed(ids)).abs().max()
    assert emb_diff == 0  # the lookup of Q8_0 rows is exact in float32
    bound, exact = first_order_logit_bound(model, twin, ids, seen)
    # both models also round their norms, attention and activations in float32, as the fp32 twin does
    fp32 = float((reference.double() - exact).abs().max())
    assert ((logits.double() - exact).abs() <= bound + fp32).all()
    assert ((logits - reference).double().abs() <= bound + 2 * fp32).all()
    assert bound.max() < 0.1 * exact.abs().max()  # and the bound says something: a tenth of the logits' size


def test_q4_blocks_keep_their_codes_and_requantized_embedding_is_noted(tmp_path):
    path = write_gguf(tmp_path / "tiny-q4_1.gguf", gguf.GGMLQuantizationType.Q4_1)
    _, fp32 = read_gguf(path)
    model = damoxing.load(path, quantized=True)
    q = model.get_submodule("blocks.1.attn.k")  # a permuted projection: rows unpermuted like the fp32 reader's
    assert isinstance(q, Int4Linear) and torch.equal(q.dequantize(), fp32["blocks.1.attn.k.weight"])
    assert isinstance(model.head.proj, Int4Linear)  # the tied head keeps the Q4_1 blocks
    assert torch.equal(model.head.proj.dequantize(), fp32["embed.weight"])
    assert any("embed: Q4_1 rows re-quantized" in n for n in model.quantization["notes"])


@pytest.mark.slow
def test_smollm2_q4_1_blocks_map_exactly(smollm2_gguf):
    model = damoxing.load(smollm2_gguf, quantized=True)
    kinds = set(model.quantization["modules"].values())
    assert kinds == {"int4/32", "int8/32", "embedding-int8/32"}  # Q4_1 layers, the Q8_0 embedding and head
    _, fp32 = read_gguf(smollm2_gguf)
    for name in ("blocks.0.attn.q", "blocks.29.mlp.down", "head.proj"):
        assert torch.equal(
            model.get_submodule(name).dequantize(), fp32["embed.weight" if name == "head.proj" else f"{name}.weight"]
        )


# ---------------------------------------------------------------------- whole models, saved and loaded
@pytest.mark.parametrize("method", ["int8", "int4", "dynamic"])
def test_quantized_checkpoint_saves_and_loads_through_damoxing_load(method, tmp_path):
    model = tiny_encoder() if method == "dynamic" else tiny_decoder()
    ids = torch.randint(0, 96, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(ids)
    section = quantize(model, method)
    assert set(section["modules"]) >= {"blocks.0.attn.q", "blocks.1.mlp.fc2" if method == "dynamic" else "head.proj"}
    assert ("embed.tokens" if method == "dynamic" else "embed") in section["modules"]
    damoxing.save(model, None, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["quantization"]["method"] == method
    loaded = damoxing.load(tmp_path)
    with torch.no_grad():
        after, again = loaded(ids), model(ids)
    assert torch.equal(after, again)  # the same codes and kernels
    assert (after - before).abs().max() < 0.1 * before.abs().max()  # and close to the float model
    assert type(loaded.get_submodule("blocks.0.attn.q")) is type(model.get_submodule("blocks.0.attn.q"))


def test_int8_tied_projection_is_stored_once(tmp_path):
    model = tiny_decoder()
    section = quantize(model, "int8")
    assert section["tied"] == {"head.proj": "embed"} and model.head.proj.weight is model.embed.weight
    damoxing.save(model, None, tmp_path)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "model.embed_tokens.weight" in keys and "lm_head.weight" not in keys
    assert "model.layers.0.self_attn.q_proj.weight_scale" in keys
    loaded = damoxing.load(tmp_path)
    assert loaded.head.proj.weight is loaded.embed.weight


def test_int4_keeps_the_vocabulary_projection_int8_and_tied(tmp_path):
    model = tiny_decoder()
    section = quantize(model, "int4")
    assert isinstance(model.get_submodule("blocks.0.attn.q"), Int4Linear)
    assert isinstance(model.head.proj, Int8Linear) and model.head.proj.groups == 1  # per row, as llama.cpp's output
    assert section["tied"] == {"head.proj": "embed"} and model.head.proj.weight is model.embed.weight
    assert any(note.startswith("head.proj:") for note in section["notes"])
    damoxing.save(model, None, tmp_path)
    loaded = damoxing.load(tmp_path)
    assert isinstance(loaded.head.proj, Int8Linear) and loaded.head.proj.weight is loaded.embed.weight


def test_generation_takes_a_quantized_model_unchanged(tmp_path):
    model = tiny_decoder()
    quantize(model, "int4")
    prompt = torch.tensor([[5, 17, 33, 2]])
    damoxing.save(model, None, tmp_path)
    out = generate(damoxing.load(tmp_path), prompt, GenerationConfig(max_new_tokens=8))
    assert out.shape == (1, 12) and torch.equal(out, generate(model, prompt, GenerationConfig(max_new_tokens=8)))


def test_unknown_method_is_a_config_error():
    with pytest.raises(ConfigError, match="quantize.method"):
        quantize(tiny_decoder(), "int3")
