"""prepare_for_decoding: fused q/k/v and gate/up, transposed layouts; the same model in every observable way."""

import pytest
import torch

import damoxing
from damoxing.inference import GenerationConfig, generate
from damoxing.inference.fast import prepare_for_decoding


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
    assert attn.qkv[0, attn.q.out_features] == 123.0
    assert mlp.gate.weight.data_ptr() == mlp.gate_up.data_ptr()
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
    prepare_for_decoding(model)
    attn, mlp = model.blocks[0].attn, model.blocks[0].mlp
    assert attn.q.weight.is_contiguous() and mlp.down.weight.is_contiguous()  # (out, in) in memory
    assert attn.qkv.t().is_contiguous() and mlp.gate_up.t().is_contiguous()  # (in, N) views of (N, in) rows
    assert attn.k.weight.data_ptr() == attn.qkv.data_ptr() + attn.q.weight.numel() * attn.qkv.element_size()
    with torch.no_grad():
        after = model(ids)
    # the same bf16 products, grouped into fewer matmuls: each output element sums the same terms, but a fused
    # matmul may block the reduction differently, so allow the rounding of a few bf16 accumulations
    scale = before.abs().max().item()
    assert (after.float() - before.float()).abs().max().item() <= 4 * 2**-8 * scale
