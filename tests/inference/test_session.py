"""Chat sessions reuse their key/value cache: a turn runs only its new tokens and replies as a fresh run would."""

import pytest
import torch

import damoxing
from damoxing.errors import UserError
from damoxing.inference import GenerationConfig
from damoxing.inference.session import ChatSession, PrefixCache
from damoxing.inference.streaming import generate_text


@pytest.fixture(scope="module")
def tokenizer(smollm2_gguf):
    return damoxing.load_tokenizer(smollm2_gguf)  # SmolLM2's chat template and byte-level BPE


@pytest.fixture(scope="module")
def model(tokenizer):
    """A tiny random Llama over SmolLM2's vocabulary, in float64 so that chunked and whole prefills agree."""
    torch.manual_seed(0)
    cfg = damoxing.preset(
        "llama-tiny", vocab_size=tokenizer.vocab_size, dim=32, layers=2, heads=4, kv_heads=2, mlp_dim=64
    )
    return damoxing.create_model(cfg).eval().double()


def test_each_turn_runs_only_its_new_tokens(model, tokenizer):
    config = GenerationConfig(max_new_tokens=6, stop_token_ids=(tokenizer.eos_id,))
    chat = ChatSession(model, tokenizer, config, system="You are terse.")
    history = []
    for message in ["Hello!", "What is the capital of France?", "Thanks. And of Germany? Answer in one word."]:
        reply = chat.chat(message)
        # the reply equals generating from the whole conversation without any cache
        prompt = tokenizer.encode(tokenizer.apply_chat_template([*chat.messages[:-1]]), add_special_tokens=False)
        assert reply == generate_text(model, tokenizer, prompt, config)
        history.append((len(prompt), chat.reused_tokens, chat.new_tokens))
        message_tokens = len(tokenizer.encode(message, add_special_tokens=False))
        if len(history) > 1:
            previous_prompt = history[-2][0]
            # the previous prompt came from the cache (its final "\n" may merge with the reply's first characters
            # when the template renders the reply as text and the tokenizer splits it anew)
            assert chat.reused_tokens >= previous_prompt - 1
            assert chat.new_tokens <= message_tokens + config.max_new_tokens + 10  # template tokens around it
    assert history[-1][0] > 2 * history[-1][2]  # most of the last prompt was not run again
    assert [m["role"] for m in chat.messages] == ["system", "user", "assistant"] * 1 + ["user", "assistant"] * 2


def test_prefix_cache_keeps_the_common_prefix(model):
    prefix = PrefixCache(model)
    ids = list(range(10, 30))
    model(torch.tensor([ids]), cache=prefix.cache)
    prefix.record(ids)
    assert prefix.reuse(ids[:12] + [5, 6, 7]) == 12 and prefix.cache.length == 12
    assert prefix.reuse(ids[:12]) == 11  # the last prompt token always runs, to give the next logits
    assert prefix.reuse([1, 2, 3]) == 0 and prefix.cache.length == 0


def test_a_tokenizer_without_template_is_refused(model, gpt2_bpe_dir):
    with pytest.raises(UserError, match="chat template"):
        ChatSession(model, damoxing.load_tokenizer(gpt2_bpe_dir))
