"""Through the official openai client: chat (plain, streamed), completions, stop strings, usage, seeds, beams."""

from __future__ import annotations

import pytest
import torch

import damoxing
from damoxing.inference import GenerationConfig
from damoxing.inference.streaming import generate_text

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def client(tiny_server):
    url, _ = tiny_server
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def local(tiny_chat_dir):
    """The same model in this process, to compute what the server should answer."""
    return damoxing.load(tiny_chat_dir).double(), damoxing.load_tokenizer(tiny_chat_dir)


def chat_prompt(tokenizer, messages):
    return tokenizer.encode(
        tokenizer.apply_chat_template(messages, add_generation_prompt=True), add_special_tokens=False
    )


def test_models_lists_the_served_model(client):
    assert [m.id for m in client.models.list().data] == ["tiny"]


def test_chat_plain_equals_local_greedy_generation(client, local):
    model, tokenizer = local
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]
    reply = client.chat.completions.create(model="tiny", messages=messages, max_tokens=12, temperature=0)
    prompt = chat_prompt(tokenizer, messages)
    expected = generate_text(
        model, tokenizer, prompt, GenerationConfig(max_new_tokens=12, stop_token_ids=(tokenizer.eos_id,))
    )
    assert reply.choices[0].message.content == expected
    assert reply.choices[0].message.role == "assistant"
    assert reply.usage.prompt_tokens == len(prompt)
    assert 1 <= reply.usage.completion_tokens <= 12
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert reply.choices[0].finish_reason == ("length" if reply.usage.completion_tokens == 12 else "stop")


def test_chat_streamed_concatenates_to_the_plain_reply_with_a_usage_chunk(client):
    messages = [{"role": "user", "content": "Tell me a story."}]
    plain = client.chat.completions.create(model="tiny", messages=messages, max_tokens=16, temperature=0)
    chunks = list(
        client.chat.completions.create(
            model="tiny",
            messages=messages,
            max_tokens=16,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [plain.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == plain.usage.total_tokens
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # token by token


def test_completions_match_local_generation_and_count_usage(client, local):
    model, tokenizer = local
    reply = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=10, temperature=0)
    ids = tokenizer.encode("Once upon a time")
    expected = generate_text(
        model, tokenizer, ids, GenerationConfig(max_new_tokens=10, stop_token_ids=(tokenizer.eos_id,))
    )
    assert reply.choices[0].text == expected
    assert reply.usage.prompt_tokens == len(ids) and reply.usage.completion_tokens <= 10


def test_stop_strings_end_the_text_before_them(client):
    full = client.completions.create(model="tiny", prompt="The", max_tokens=24, temperature=0).choices[0].text
    assert len(full) > 4, "the tiny model should write something to stop in"
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    cut = client.completions.create(model="tiny", prompt="The", max_tokens=24, temperature=0, stop=[stop])
    assert cut.choices[0].text == full[: full.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
    streamed = client.completions.create(
        model="tiny", prompt="The", max_tokens=24, temperature=0, stop=stop, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed) == full[: full.index(stop)]


def test_seeded_sampling_repeats_and_logprobs_are_reported(client):
    runs = [
        client.completions.create(model="tiny", prompt="Hi", max_tokens=12, temperature=1.0, seed=7).choices[0].text
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    reply = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=5,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
    )
    content = reply.choices[0].logprobs.content
    assert len(content) >= 1 and all(len(t.top_logprobs) == 3 for t in content)
    # greedy: the chosen token is the most probable one
    assert all(t.logprob == pytest.approx(t.top_logprobs[0].logprob) and t.logprob <= 0 for t in content)


def test_beam_search_through_num_beams(client, local):
    model, tokenizer = local
    reply = client.completions.create(model="tiny", prompt="Hello", max_tokens=6, extra_body={"num_beams": 3})
    ids = torch.tensor([tokenizer.encode("Hello")])
    out = damoxing.inference.generate(
        model, ids, GenerationConfig(max_new_tokens=6, num_beams=3, stop_token_ids=(tokenizer.eos_id,))
    )
    new = [t for t in out[0, ids.shape[1] :].tolist()]
    if tokenizer.eos_id in new:
        new = new[: new.index(tokenizer.eos_id)]
    assert reply.choices[0].text == tokenizer.decode(new)
