"""ONNX export: onnxruntime gives PyTorch's outputs within 1e-4 on any batch size and length, on real weights."""

from __future__ import annotations

import pytest
import torch

import damoxing
from damoxing.compress.export import export_onnx, greedy_onnx, onnx_session, run_onnx
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


def check_matches(model, path, tol: float):
    session = onnx_session(path)
    for batch, length in SHAPES:
        x = inputs(model, batch, length)
        with torch.no_grad():
            if hasattr(model, "new_cache"):
                positions = (x["attention_mask"].cumsum(-1) - 1).clamp(min=0)
                expected = model(x["input_ids"], x["attention_mask"], positions)
            else:
                expected = model(x["input_ids"], x["attention_mask"], x["token_type_ids"])
        got = run_onnx(session, x)
        assert got.shape == expected.shape
        assert (got - expected).abs().max() <= tol
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
    check_matches(model, path, 1e-4)
    prompt = torch.tensor([[1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198]])
    tokens = greedy_onnx(onnx_session(path), prompt, 64)
    assert torch.equal(tokens, generate(model, prompt, GenerationConfig(max_new_tokens=64))[:, prompt.shape[1] :])
