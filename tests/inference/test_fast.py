"""prepare_for_decoding: fused q/k/v and gate/up, packed or transposed layouts; the same model in every observable way."""

import copy

import pytest
import torch
from torch import nn

import damoxing
from damoxing.inference import GenerationConfig, generate
from damoxing.inference.fast import PackedLinear, Projection, can_pack, prepare_for_decoding


def tiny(kind):
    torch.manual_seed(0)
    if kind == "llama":
        cfg = damoxing.preset("llama-tiny", vocab_size=96, dim=32, layers=2, heads=4, kv_heads=2, mlp_dim=64)
    else:  # GPT-2 style: biases, learned positions, GELU MLP, tied embeddings
        cfg = damoxing.DecoderConfig(vocab_size=96, dim=32, layers=2, heads=4, mlp_dim=64, max_positions=64)
    return damoxing.create_model(cfg).eval().double()


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_prepared_model_computes_the_same(kind):
    model = tiny(kind)
    ids = torch.randint(0, 96, (2, 11), generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[0, 0] + [1] * 9, [1] * 11])
    with torch.no_grad():
        before = model(ids, mask)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    tokens = generate(model, ids, GenerationConfig(max_new_tokens=8), mask)
    prepare_for_decoding(model)
    attn = model.blocks[0].attn
    assert attn.qkv is not None and attn._fused() is False  # grads are on outside no_grad
    with torch.no_grad():
        assert attn._fused()
        after = model(ids, mask)
    assert torch.allclose(after, before, rtol=0, atol=1e-12)
    assert torch.equal(generate(model, ids, GenerationConfig(max_new_tokens=8), mask), tokens)
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())  # checkpoints see no change


def test_fused_weights_are_views_not_copies():
    model = prepare_for_decoding(tiny("llama"))
    attn, mlp = model.blocks[0].attn, model.blocks[0].mlp
    with torch.no_grad():
        attn.k.weight[0, 0] = 123.0  # an update through the Parameter shows in the fused matrix
    assert attn.qkv.matrix[0, attn.q.out_features] == 123.0
    assert mlp.gate.weight.data_ptr() == mlp.gate_up.matrix.data_ptr()
    assert model.head.proj.weight is model.embed.weight and model.embed.weight.stride() == (1, 96)


def test_training_still_reaches_every_weight():
    model = prepare_for_decoding(tiny("llama")).train()
    ids = torch.randint(0, 96, (2, 7), generator=torch.Generator().manual_seed(1))
    model(ids).sum().backward()
    block = model.blocks[0]
    for linear in (block.attn.q, block.attn.k, block.attn.v, block.mlp.gate, block.mlp.up):
        assert linear.weight.grad is not None and linear.weight.grad.abs().sum() > 0


def test_moving_the_model_falls_back_to_separate_weights():
    model = prepare_for_decoding(tiny("llama"))
    ids = torch.randint(0, 96, (1, 6), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(ids).float()
        model.float()  # new storage for every Parameter: the fused matrices no longer hold them
        assert not model.blocks[0].attn._fused()
        assert torch.allclose(model(ids), expected, atol=1e-5)


def test_lora_wrapped_projections_stay_separate():
    from damoxing.finetune.methods import apply_lora

    model = tiny("llama")
    apply_lora(model, rank=2)
    ids = torch.randint(0, 96, (1, 6), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model(ids)
        prepare_for_decoding(model)
        assert torch.allclose(model(ids), expected, rtol=0, atol=1e-12)


def test_bf16_weights_keep_the_row_layout_and_fuse():
    """bf16 matrix-vector products run fastest on (out, in) rows: the weights stay so, and are still fused."""
    model = tiny("llama").to(torch.bfloat16)
    ids = torch.randint(0, 96, (1, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        before = model(ids)
    prepare_for_decoding(model, pack=False)  # the unpacked layout
    attn, mlp = model.blocks[0].attn, model.blocks[0].mlp
    assert attn.q.weight.is_contiguous() and mlp.down.weight.is_contiguous()  # (out, in) in memory
    assert (
        attn.qkv.matrix.t().is_contiguous() and mlp.gate_up.matrix.t().is_contiguous()
    )  # (in, N) views of (N, in) rows
    assert (
        attn.k.weight.data_ptr() == attn.qkv.matrix.data_ptr() + attn.q.weight.numel() * attn.qkv.matrix.element_size()
    )
    with torch.no_grad():
        after = model(ids)
    # the same bf16 products, grouped into fewer matmuls: each output element sums the same terms, but a fused
    # matmul may block the reduction differently, so allow the rounding of a few bf16 accumulations
    scale = before.abs().max().item()
    assert (after.float() - before.float()).abs().max().item() <= 4 * 2**-8 * scale


packs = pytest.mark.skipif(
    not can_pack(torch.float32, torch.device("cpu")), reason="no oneDNN in this torch build: nothing is packed"
)


@packs
def test_packed_projection_is_within_the_float32_rounding_bound():
    """One packed product against float64: |fl(x @ W^T) - x @ W^T| <= K u sum_k |x_k w_k| (Higham's gamma_K, u = 2^-24)
    for any order of the K additions, so this bound holds whatever blocking oneDNN chooses."""
    g = torch.Generator().manual_seed(0)
    linears = [nn.Linear(96, n) for n in (40, 24, 24)]
    for linear in linears:
        linear.weight.data.normal_(generator=g)
        linear.bias.data.normal_(generator=g)
    projection = Projection(linears, pack=True)
    assert projection.packed
    x = torch.randn(3, 5, 96, generator=g)
    w = torch.cat([linear.weight for linear in linears]).double()
    b = torch.cat([linear.bias for linear in linears]).double()
    exact = x.double() @ w.T + b
    bound = (96 + 1) * 2**-24 * (x.double().abs() @ w.abs().T + b.abs())  # the bias is one more addition
    with torch.no_grad():
        assert ((projection(x).double() - exact).abs() <= bound).all()


@packs
def test_packed_model_keeps_parameters_ties_and_state_dict():
    model = tiny("llama").float()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    prepare_for_decoding(model)
    assert isinstance(model.blocks[0].attn.o, PackedLinear) and model.blocks[0].attn.qkv.packed
    assert type(model.blocks[0].attn.q) is nn.Linear  # runs inside the fused q/k/v: not packed a second time
    assert model.head.proj.weight is model.embed.weight  # the tied head is still tied
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


@packs
def test_packed_model_is_as_accurate_as_the_unpacked_one():
    """Packed and unpacked fp32 each differ from the float64 model by their rounding; the packed kernel sums in
    another order but must be no less accurate: within 4x the unpacked fp32 model's own error (plus one ulp)."""
    model = tiny("gpt2")  # float64
    ids = torch.randint(0, 96, (2, 9), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        exact = model(ids)
        plain = model.float()(ids).double()
        packed = prepare_for_decoding(model)(ids).double()
    assert isinstance(model.blocks[0].mlp.fc1, PackedLinear)
    own = (plain - exact).abs().max().item()
    assert (packed - exact).abs().max().item() <= 4 * own + 2**-23 * exact.abs().max().item()


@packs
def test_a_packed_weight_follows_in_place_edits():
    """The packed copy remembers each weight's version: an optimizer step or a no_grad edit repacks it."""
    model = prepare_for_decoding(tiny("llama").float())
    ids = torch.randint(0, 96, (1, 6), generator=torch.Generator().manual_seed(5))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model(ids).square().mean().backward()  # autograd on: the Parameters, not the packed copies
    optimizer.step()
    with torch.no_grad():
        model.blocks[0].attn.o.weight.mul_(2.0)
        model.blocks[1].mlp.up.weight[0].fill_(0.25)
        after = model(ids)
        reference = copy.deepcopy(model)
        for module in reference.modules():  # the same weights, never packed
            module.qkv = module.gate_up = module.projection = None
        assert torch.allclose(after, reference(ids), rtol=1e-4, atol=1e-5)  # fp32 sums in another order


def test_half_precision_keys_and_values_are_cached_in_float32_on_a_cpu():
    model = prepare_for_decoding(tiny("llama").to(torch.bfloat16))
    ids = torch.randint(0, 96, (1, 5), generator=torch.Generator().manual_seed(6))
    cache = model.new_cache()
    with torch.no_grad():
        logits = model(ids, cache=cache)
    assert cache[0].k.dtype == torch.float32 and logits.dtype == torch.bfloat16


@pytest.mark.parametrize("method", ["int8", "int4"])
def test_quantized_projections_fuse_into_one_layer(method):
    """Quantized q/k/v and gate/up run as one kernel call over their codes side by side: the same codes and
    scales, so each output is the same sum; the kernels round their output to bf16 (quantize.py), so allow
    one bf16 ulp of each output element (at most 2^-7 of its size) where blocking changes the fp32 accumulation."""
    from damoxing.compress.quantize import quantize

    torch.manual_seed(0)
    cfg = damoxing.preset("llama-tiny", vocab_size=96, dim=64, layers=2, heads=4, kv_heads=2, mlp_dim=128)
    model = damoxing.create_model(cfg).eval()
    quantize(model, method)
    attn = model.blocks[0].attn
    x = torch.randn(2, 3, 64, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        separate = torch.cat([attn.q(x), attn.k(x), attn.v(x)], dim=-1)
        prepare_for_decoding(model)
        assert attn.qkv is not None and attn.qkv.layer is not None and model.blocks[0].mlp.gate_up is not None
        assert attn.qkv.layer.kind == attn.q.kind
        fused = attn.qkv(x)
    assert ((fused - separate).abs() <= 2**-7 * separate.abs()).all()
