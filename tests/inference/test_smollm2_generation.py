"""SmolLM2-135M-Instruct: greedy, beam search and the penalties give transformers' tokens exactly.

Both sides run in float64 on the same weights (transformers reads the HF folder damoxing writes), so that no
near-tie can flip with the CPU's summation order; damoxing runs prepared for decoding (fused, transposed
weights). One model of each is shared by the module; every case generates 32 tokens.
"""

from __future__ import annotations

import pytest
import torch

import damoxing
from damoxing.inference import GenerationConfig, generate
from damoxing.inference.fast import prepare_for_decoding
from damoxing.inference.streaming import INCOMPLETE, stream_text

# "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n" in SmolLM2's vocabulary
PROMPT = torch.tensor([[1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198]])
NEW = 32
EOS = 2  # <|im_end|>


@pytest.fixture(scope="module")
def tokenizer(smollm2_gguf):
    return damoxing.load_tokenizer(smollm2_gguf)


@pytest.fixture(scope="module")
def models(smollm2_gguf, tokenizer, tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    ours = damoxing.load(smollm2_gguf)
    folder = tmp_path_factory.mktemp("smollm2")
    damoxing.save(ours, tokenizer, folder)
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float64).eval()
    return prepare_for_decoding(ours.double()), hf


def theirs(hf, prompt=PROMPT, **settings):
    with torch.no_grad():
        return hf.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=NEW,
            do_sample=False,
            pad_token_id=EOS,
            **settings,
        )


@pytest.mark.parametrize(
    "settings",
    [
        {},  # greedy
        {"repetition_penalty": 1.3},
        {"no_repeat_ngram_size": 2},
    ],
    ids=["greedy", "repetition_penalty", "no_repeat_ngram_size"],
)
def test_greedy_matches_transformers(models, settings):
    ours, hf = models
    expected = theirs(hf, eos_token_id=None, **settings)  # no stop: all 32 tokens
    got = generate(ours, PROMPT, GenerationConfig(max_new_tokens=NEW, **settings))
    assert got.shape[1] == PROMPT.shape[1] + NEW
    assert got[0, PROMPT.shape[1] :].tolist() == expected[0, PROMPT.shape[1] :].tolist()


def test_beam_search_matches_transformers(models, tokenizer):
    """4 beams over 32 new tokens on both sides: no stop token, so that no beam ends early and every one of the
    32 steps ranks the 4 x vocabulary candidates. The prompt (the chat template's own system message, then the
    question) is one where 4 beams answer otherwise than 2 beams and than greedy decoding, so that the check
    sees the search itself (with PROMPT, 2 beams already give the tokens of 4)."""
    ours, hf = models
    prompt = torch.tensor(
        [
            tokenizer.encode(
                tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}]),
                add_special_tokens=False,
            )
        ]
    )
    T = prompt.shape[1]
    expected = theirs(hf, prompt, eos_token_id=None, num_beams=4)
    got = generate(ours, prompt, GenerationConfig(max_new_tokens=NEW, num_beams=4, stop_token_ids=()))
    assert got.shape == expected.shape == (1, T + NEW)
    assert got[0, T:].tolist() == expected[0, T:].tolist()
    assert got[0, :T].tolist() == prompt[0].tolist()
    for beams in (1, 2):
        other = generate(ours, prompt, GenerationConfig(max_new_tokens=NEW, num_beams=beams, stop_token_ids=()))
        assert other[0, T:].tolist() != got[0, T:].tolist(), f"{beams} beam(s) give the same tokens as 4"


def test_streamed_reply_is_the_decoded_reply(models, tokenizer):
    ours, _ = models
    prompt = tokenizer.encode(
        tokenizer.apply_chat_template(
            [{"role": "user", "content": "Reply with three emoji and the Chinese word for cat."}]
        ),
        add_special_tokens=False,
    )
    streamed = stream_text(ours, tokenizer, prompt, GenerationConfig(max_new_tokens=NEW, stop_token_ids=(EOS,)))
    deltas = list(streamed)
    reply = [t for t in streamed.token_ids if t != EOS]
    assert "".join(deltas) == tokenizer.decode(reply) and deltas
    assert not any(INCOMPLETE in d for d in deltas)
