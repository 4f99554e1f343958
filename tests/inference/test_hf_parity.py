"""Decoding equals transformers' generate token for token, on a tiny random Llama in float64.

Random weights (std 0.3) give varied continuations; the stop tokens below are ones the model emits, so beams
finish at different lengths and every branch of the beam scorer (length_penalty, early_stopping) is exercised.
The real-model checks (SmolLM2) are in test_smollm2_generation.py.
"""

import pytest
import torch

import damoxing
from damoxing.inference import GenerationConfig, generate

PROMPT = torch.tensor([[1, 5, 17, 33, 8, 60, 41]])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=96,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        rms_norm_eps=1e-6,
        rope_theta=5000.0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    hf = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            p.uniform_(0.5, 1.5) if "norm" in name else p.normal_(0, 0.3)
    folder = tmp_path_factory.mktemp("tiny-llama")
    hf.save_pretrained(folder)
    return damoxing.load(folder).double(), hf.double()


def theirs(hf, prompt, mask=None, **settings):
    with torch.no_grad():
        return hf.generate(
            prompt,
            attention_mask=torch.ones_like(prompt) if mask is None else mask,
            do_sample=False,
            pad_token_id=0,
            **settings,
        )


def test_greedy_and_penalties(models):
    ours, hf = models
    for settings in (
        {},
        {"repetition_penalty": 1.3},
        {"no_repeat_ngram_size": 2},
        {"repetition_penalty": 0.8, "no_repeat_ngram_size": 3},
    ):
        expected = theirs(hf, PROMPT, max_new_tokens=32, eos_token_id=None, **settings)
        got = generate(ours, PROMPT, GenerationConfig(max_new_tokens=32, **settings))
        assert torch.equal(got, expected), settings


def test_min_new_tokens_and_stop_token(models):
    ours, hf = models
    expected = theirs(hf, PROMPT, max_new_tokens=20, eos_token_id=85, min_new_tokens=5)
    got = generate(ours, PROMPT, GenerationConfig(max_new_tokens=20, stop_token_ids=(85,), min_new_tokens=5))
    assert torch.equal(got, expected) and got.shape[1] < PROMPT.shape[1] + 20  # it stopped early


@pytest.mark.parametrize(
    "stop, early_stopping, length_penalty",
    [
        (85, False, 1.0),
        (85, False, 2.0),
        (85, True, 2.0),
        (85, "never", 2.0),
        (8, False, 0.0),
        (8, "never", -0.5),
        (60, True, 1.0),
    ],
)
def test_beam_search(models, stop, early_stopping, length_penalty):
    ours, hf = models
    expected = theirs(
        hf,
        PROMPT,
        max_new_tokens=24,
        num_beams=4,
        eos_token_id=stop,
        early_stopping=early_stopping,
        length_penalty=length_penalty,
    )
    got = generate(
        ours,
        PROMPT,
        GenerationConfig(
            max_new_tokens=24,
            num_beams=4,
            stop_token_ids=(stop,),
            early_stopping=early_stopping,
            length_penalty=length_penalty,
            pad_token_id=0,
        ),
    )
    assert torch.equal(got, expected)


def test_beam_search_with_penalties_and_a_left_padded_batch(models):
    ours, hf = models
    batch = torch.tensor([[0, 0, 0, 9, 30, 2, 77], PROMPT[0].tolist()])
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [1] * 7])
    settings = {"max_new_tokens": 16, "num_beams": 3, "repetition_penalty": 1.2, "no_repeat_ngram_size": 3}
    expected = theirs(hf, batch, mask, eos_token_id=8, **settings)
    got = generate(ours, batch, GenerationConfig(stop_token_ids=(8,), pad_token_id=0, **settings), mask)
    assert torch.equal(got, expected)
