"""ONNX export: onnxruntime gives PyTorch's outputs within 1e-4 on any batch size and length, on real weights."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import damoxing
from damoxing.compress.export import (
    export_onnx,
    greedy_onnx,
    greedy_onnx_cached,
    onnx_session,
    past_names,
    present_names,
    run_onnx,
)
from damoxing.compress.quantize import quantize
from damoxing.errors import ConfigError
from damoxing.inference import GenerationConfig, generate

from .conftest import tiny_decoder, tiny_encoder

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")  # the dynamo exporter writes through it

SHAPES = [(1, 5), (3, 17)]  # neither is the traced (2, 8): both axes must be dynamic


def inputs(model, batch: int, length: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, model.config.vocab_size, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    if batch > 1:
        mask[1, -3:] = 0  # a padded row
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def _forward(model, x: dict) -> torch.Tensor:
    with torch.no_grad():
        if hasattr(model, "new_cache"):
            positions = (x["attention_mask"].cumsum(-1) - 1).clamp(min=0)
            return model(x["input_ids"], x["attention_mask"], positions)
        return model(x["input_ids"], x["attention_mask"], x["token_type_ids"])


def check_matches(model, path, tol: float, fp32_floor: bool = False):
    """onnxruntime's outputs equal PyTorch's within `tol`. With `fp32_floor` (deep real models), the bound is
    at least 4x PyTorch's own float32 error against the same model in float64: both runtimes round in float32 in
    their own summation order, so they can differ by the sum of their errors (2x PyTorch's, if onnxruntime's is
    no larger), and 4x leaves onnxruntime twice PyTorch's error. An export bug (a mask, a position, a layer
    wrong) moves logits by far more."""
    session = onnx_session(path)
    exact = copy.deepcopy(model).double() if fp32_floor else None
    for batch, length in SHAPES:
        x = inputs(model, batch, length)
        expected = _forward(model, x)
        bound = tol
        if exact is not None:
            bound = max(tol, 4 * (expected.double() - _forward(exact, x)).abs().max().item())
        got = run_onnx(session, x)
        assert got.shape == expected.shape
        assert (got - expected).abs().max() <= bound
    return session


def test_tiny_encoder_and_decoder_match_pytorch(tmp_path):
    check_matches(tiny_encoder(), export_onnx(tiny_encoder(), tmp_path / "enc.onnx"), 1e-4)
    decoder = tiny_decoder()
    session = check_matches(decoder, export_onnx(decoder, tmp_path / "dec.onnx"), 1e-4)
    prompt = torch.tensor([[5, 17, 33, 2]])
    assert torch.equal(
        greedy_onnx(session, prompt, 16), generate(decoder, prompt, GenerationConfig(max_new_tokens=16))[:, 4:]
    )
    assert not (tmp_path / "dec.onnx.data").exists()  # one file


def test_decoder_with_a_kv_cache_matches_pytorch_step_by_step_and_greedy(tmp_path):
    """optimum's signature: the prompt from an empty past, then one token at a time with the presents fed back,
    gives the full forward pass's logits; greedy decoding through onnxruntime gives damoxing's tokens."""
    decoder = tiny_decoder(dim=32)  # hidden 32, 2 layers, grouped-query attention (4 heads, 2 key/value heads)
    session = onnx_session(export_onnx(decoder, tmp_path / "cached.onnx", kv_cache=True))
    names = [i.name for i in session.get_inputs()]
    assert names == ["input_ids", "attention_mask", "position_ids", *past_names(decoder)]
    assert [o.name for o in session.get_outputs()] == ["logits", *present_names(decoder)]

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, decoder.config.vocab_size, (3, 13), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # a left-padded row
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        expected = decoder(ids, mask, positions)  # (B, T, V) float32
        exact = decoder.double()(ids, mask, positions)
        decoder.float()
    # Two float32 evaluations of the same float64 function each carry rounding error of about the size PyTorch's
    # has (same operations, other kernels and summation orders): their gap is bounded by a small multiple of it.
    tol = 4 * float((expected - exact).abs().max()) + 8 * torch.finfo(torch.float32).eps * float(exact.abs().max())

    feed = {"input_ids": ids[:, :10], "attention_mask": mask[:, :10], "position_ids": positions[:, :10]}
    feed.update({name: np.zeros((3, 2, 0, 8), dtype=np.float32) for name in past_names(decoder)})  # empty past
    got = []
    for step in range(4):
        logits, *present = session.run(
            None, {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in feed.items()}
        )
        assert present[0].shape == (3, 2, 10 + step, 8)  # (B, kv_heads, past + new, head_dim)
        got.append(torch.from_numpy(logits))
        t = 10 + step
        feed = {
            "input_ids": ids[:, t : t + 1],
            "attention_mask": mask[:, : t + 1],
            "position_ids": positions[:, t : t + 1],
        }
        feed.update(zip(past_names(decoder), present))
    got = torch.cat(got, dim=1)  # (B, 13, V)
    assert got.shape == expected.shape
    gap = float((got - expected)[mask.bool()].abs().max())  # padding positions are not outputs
    assert gap <= tol, (gap, tol)

    prompt, prompt_mask = ids[:, :6], mask[:, :6]
    tokens = greedy_onnx_cached(session, prompt, 16, prompt_mask)
    assert torch.equal(tokens, generate(decoder, prompt, GenerationConfig(max_new_tokens=16), prompt_mask)[:, 6:])


def test_quantized_model_is_refused(tmp_path):
    model = tiny_decoder()
    quantize(model, "int8")
    with pytest.raises(ConfigError, match="quantized"):
        export_onnx(model, tmp_path / "q.onnx")


@pytest.mark.slow
def test_minilm_classifier_matches_pytorch(minilm_dir, tmp_path):
    model = damoxing.load(minilm_dir)
    torch.manual_seed(0)
    model.reset_head(5, "sequence")
    model.eval()
    check_matches(model, export_onnx(model, tmp_path / "minilm.onnx"), 1e-4)


@pytest.mark.slow
def test_smollm2_decoder_matches_pytorch_and_greedy_gives_the_same_64_tokens(smollm2_gguf, tmp_path):
    model = damoxing.load(smollm2_gguf)
    path = export_onnx(model, tmp_path / "smollm2.onnx")
    check_matches(model, path, 1e-4, fp32_floor=True)  # 30 layers: PyTorch's own fp32 error reaches ~1e-4
    prompt = torch.tensor([[1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198]])
    tokens = greedy_onnx(onnx_session(path), prompt, 64)
    assert torch.equal(tokens, generate(model, prompt, GenerationConfig(max_new_tokens=64))[:, prompt.shape[1] :])


def test_export_command_with_a_kv_cache_checks_greedy_tokens(tmp_path, capsys):
    import json

    from damoxing.cli import main
    from damoxing.io.checkpoint import save_model

    save_model(tiny_decoder(dim=32), None, tmp_path / "decoder")
    assert main(["export", str(tmp_path / "decoder"), str(tmp_path / "d.onnx"), "--kv-cache"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["greedy_tokens_equal"] is True
    assert report["inputs"][:3] == ["input_ids", "attention_mask", "position_ids"]
    assert "past_key_values.1.value" in report["inputs"]
