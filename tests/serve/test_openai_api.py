"""Through the official openai client: chat (plain, streamed), completions, stop strings, usage, seeds, beams."""

from __future__ import annotations

import pytest
import torch

import damoxing
from damoxing.inference import GenerationConfig
from damoxing.inference.streaming import stream_text

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
    expected = stream_text(
        model, tokenizer, prompt, GenerationConfig(max_new_tokens=12, stop_token_ids=(tokenizer.eos_id,))
    )
    assert reply.choices[0].message.content == "".join(expected)
    assert reply.choices[0].message.role == "assistant"
    assert reply.usage.prompt_tokens == len(prompt)
    assert reply.usage.completion_tokens == len(expected.token_ids)  # every token generated, a stop token too
    assert reply.usage.total_tokens == len(prompt) + len(expected.token_ids)
    assert reply.choices[0].finish_reason == expected.finish_reason


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
    assert chunks[-1].choices == [] and chunks[-1].usage == plain.usage
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # token by token


def test_completions_match_local_generation_and_count_usage(client, local):
    model, tokenizer = local
    reply = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=10, temperature=0)
    ids = tokenizer.encode("Once upon a time")
    expected = stream_text(
        model, tokenizer, ids, GenerationConfig(max_new_tokens=10, stop_token_ids=(tokenizer.eos_id,))
    )
    assert reply.choices[0].text == "".join(expected)
    assert reply.usage.prompt_tokens == len(ids)
    assert reply.usage.completion_tokens == len(expected.token_ids)
    assert reply.usage.total_tokens == len(ids) + len(expected.token_ids)


SEED = 7  # sampling seed of the completion of "The" that the stop-string tests cut: its tokens are plain ASCII
CHAT_SEED = 1  # the same for the reply to "Hi"


@pytest.fixture(scope="module")
def sampled(client):
    """The whole sampled completion of "The" (24 tokens): its text, its tokens' texts and log-probabilities."""
    choice = client.completions.create(
        model="tiny", prompt="The", max_tokens=24, temperature=1.0, seed=SEED, logprobs=1
    ).choices[0]
    tokens = choice.logprobs.tokens  # the server decodes each token id alone with the tokenizer
    assert len(tokens) == 24 and "".join(tokens) == choice.text, "choose a SEED whose tokens decode alone"
    return choice.text, tokens, choice.logprobs.token_logprobs


def stop_across(text: str, tokens: list[str], whole: bool) -> tuple[str, int, int]:
    """(stop, where it starts, k): a stop string over the boundary of tokens k and k + 1 that appears nowhere
    earlier in `text`: the last two characters of token k and the first two of k + 1, or (whole) all of token k
    and the first character of k + 1."""
    starts = [0]
    for token in tokens:
        starts.append(starts[-1] + len(token))  # starts[i]: where token i's text begins
    for k in range(2, len(tokens) - 1):
        if len(tokens[k]) < 3 or len(tokens[k + 1]) < 2:
            continue
        start, end = (starts[k], starts[k + 1] + 1) if whole else (starts[k + 1] - 2, starts[k + 1] + 2)
        stop = text[start:end]
        if text.find(stop) == start:
            assert starts[k] <= start < starts[k + 1] < end < starts[k + 2]  # it spans two tokens
            return stop, start, k
    raise AssertionError("no stop string over a token boundary: choose another seed")


def test_stop_strings_end_the_text_before_them(client, sampled):
    """The stop string begins with the last two characters of one token, which the server must hold back (they
    may begin it), and ends in the next token: the text ends right before it and none of it ever comes out."""
    full, tokens, _ = sampled
    stop, at, _ = stop_across(full, tokens, whole=False)
    settings = {"model": "tiny", "prompt": "The", "max_tokens": 24, "temperature": 1.0, "seed": SEED, "stop": [stop]}
    cut = client.completions.create(**settings)
    text = cut.choices[0].text
    assert text == full[:at] and cut.choices[0].finish_reason == "stop"
    assert not any(text.endswith(stop[:n]) for n in range(1, len(stop) + 1))  # no beginning of it either
    chunks = [c.choices[0].text for c in client.completions.create(**settings, stream=True)]
    assert "".join(chunks) == full[:at]


def test_logprobs_cover_only_the_text_returned(client, sampled):
    """A token wholly inside the stop string (it was held back, then dropped) or the token completing it has no
    log-probability in the answer; a token whose text partly comes out before the stop has one. Plain and
    streamed, completions and chat alike."""
    full, tokens, logprobs = sampled
    for whole in (True, False):
        stop, at, k = stop_across(full, tokens, whole)
        kept = k if whole else k + 1  # the tokens whose text (some of it) is in the answer
        settings = {"model": "tiny", "prompt": "The", "max_tokens": 24, "temperature": 1.0, "seed": SEED}
        answer = client.completions.create(**settings, stop=stop, logprobs=1)
        cut = answer.choices[0]
        assert cut.text == full[:at]
        assert answer.usage.completion_tokens == k + 2  # generation ran to the token completing the stop string
        assert cut.logprobs.tokens == tokens[:kept] and cut.logprobs.token_logprobs == logprobs[:kept]
        chunks = list(client.completions.create(**settings, stop=stop, logprobs=1, stream=True))
        assert "".join(c.choices[0].text for c in chunks) == full[:at]
        assert [t for c in chunks if c.choices[0].logprobs for t in c.choices[0].logprobs.tokens] == tokens[:kept]

    settings = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 12,
        "temperature": 1.0,
        "seed": CHAT_SEED,
        "logprobs": True,
    }
    reply = client.chat.completions.create(**settings).choices[0]
    text, tokens = reply.message.content, [t.token for t in reply.logprobs.content]
    assert "".join(tokens) == text and len(tokens) == 12, "choose a CHAT_SEED whose tokens decode alone"
    for whole in (True, False):
        stop, at, k = stop_across(text, tokens, whole)
        kept = k if whole else k + 1
        cut = client.chat.completions.create(**settings, stop=stop).choices[0]
        assert cut.message.content == text[:at] and [t.token for t in cut.logprobs.content] == tokens[:kept]
        chunks = [c for c in client.chat.completions.create(**settings, stop=stop, stream=True) if c.choices]
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == text[:at]
        streamed = [t.token for c in chunks if c.choices[0].logprobs for t in c.choices[0].logprobs.content or []]
        assert streamed == tokens[:kept]


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
    new = out[0, ids.shape[1] :].tolist()
    if tokenizer.eos_id in new:
        new = new[: new.index(tokenizer.eos_id) + 1]  # the stop token counts, and its padding does not
    assert reply.usage.prompt_tokens == ids.shape[1] and reply.usage.completion_tokens == len(new)
    assert reply.choices[0].text == tokenizer.decode([t for t in new if t != tokenizer.eos_id])
