"""Continuous batching under load, on the tiny random decoder: concurrent clients share decode steps, every
response is complete and equals the lone answer, the queue bound answers 429, a client that leaves stops its job."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

import damoxing
from damoxing.inference import GenerationConfig
from damoxing.inference.streaming import generate_text
from damoxing.serve.engine import Delta, common_prefix

from .conftest import http, running_server

openai = pytest.importorskip("openai")

SEEDS = (3, 4, 5)  # the interleaved conversations' sampling seeds, one per turn


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def chat_body(i: int, max_tokens: int = 12, **extra) -> dict:
    return {
        "model": "tiny",
        "messages": [{"role": "user", "content": f"Request {i}: " + "word " * (i % 7)}],
        "max_tokens": max_tokens,
        "temperature": 0,
        **extra,
    }


def streamed(url: str, body: dict) -> tuple[str, str | None, bool]:
    """(text, finish_reason, ended with [DONE]) of a streamed chat completion read with the standard library."""
    request = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=json.dumps({**body, "stream": True}).encode(),
        headers={"content-type": "application/json"},
    )
    text, finish, done = "", None, False
    with urllib.request.urlopen(request, timeout=120) as response:
        for line in response:
            line = line.decode().strip()
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                done = True
                break
            choice = json.loads(line[6:])["choices"][0]
            text += choice["delta"].get("content") or ""
            finish = choice["finish_reason"] or finish
    return text, finish, done


def test_sixteen_clients_four_requests_each_share_the_batch(tiny_server, tiny_chat_dir):
    url, app = tiny_server
    engine = app.state.engine
    model, tokenizer = damoxing.load(tiny_chat_dir).double(), damoxing.load_tokenizer(tiny_chat_dir)

    def lone(i):  # what request i answers when it runs alone
        messages = chat_body(i)["messages"]
        prompt = tokenizer.encode(tokenizer.apply_chat_template(messages), add_special_tokens=False)
        return generate_text(
            model, tokenizer, prompt, GenerationConfig(max_new_tokens=12, stop_token_ids=(tokenizer.eos_id,))
        )

    def client(c):
        results = []
        for r in range(4):
            i = c * 4 + r
            if r % 2:
                results.append((i, *streamed(url, chat_body(i))))
            else:
                status, _, body = http(f"{url}/v1/chat/completions", chat_body(i), timeout=120)
                assert status == 200, body
                choice = body["choices"][0]
                results.append((i, choice["message"]["content"], choice["finish_reason"], True))
        return results

    before, steps = rss_mb(), engine.steps
    start = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        results = [row for rows in pool.map(client, range(16)) for row in rows]
    seconds = time.perf_counter() - start
    after = rss_mb()
    print(
        f"\n64 requests from 16 clients in {seconds:.1f} s; {engine.steps - steps} decode steps; "
        f"resident memory {before:.0f} MB before, {after:.0f} MB after"
    )
    assert len(results) == 64
    for i, text, finish, done in results:
        assert done and finish in ("stop", "length"), (i, finish)
        assert text == lone(i), i  # batched decoding answers as the request would alone (float64)
    assert engine.steps - steps < 64 * 12 / 2, "requests did not share decode steps"
    assert after - before < 200, "resident memory grew by more than the model and a few caches"
    assert engine.pending == 0 and engine.rows == []


def test_sixty_four_clients_against_a_queue_of_sixteen_get_429_and_the_server_keeps_serving(tiny_server):
    url, _ = tiny_server
    barrier = threading.Barrier(64)

    def client(i):
        barrier.wait()
        status, headers, body = http(f"{url}/v1/chat/completions", chat_body(i, max_tokens=32), timeout=120)
        if status == 429:
            assert headers.get("retry-after") and body["error"]["code"] == "rate_limit_exceeded"
        else:
            assert status == 200 and body["choices"][0]["finish_reason"] in ("stop", "length"), body
        return status

    with ThreadPoolExecutor(64) as pool:
        statuses = list(pool.map(client, range(64)))
    assert statuses.count(429) >= 64 - 16 - 16  # at most 16 at once; some may finish while others arrive
    assert statuses.count(200) >= 16
    assert set(statuses) <= {200, 429}
    assert http(f"{url}/v1/chat/completions", chat_body(1))[0] == 200


def test_a_client_that_disconnects_stops_its_generation(tiny_chat_dir):
    """The client asks for 2000 tokens and leaves after the first text arrives: the engine ends the job without
    an answer (no Done) within a few steps, far fewer than the 1999 the whole answer takes."""
    import torch

    from damoxing.serve.app import ServeOptions

    max_tokens = 2000
    options = ServeOptions(str(tiny_chat_dir), model_name="tiny", max_tokens=max_tokens, dtype=torch.float64)
    with running_server(options) as (url, app):
        engine = app.state.engine
        jobs, events = [], []
        submit = engine.submit

        def recording(job):  # note the job and every event the engine delivers to it
            deliver = job.deliver
            job.deliver = lambda event: (events.append(event), deliver(event))
            jobs.append(job)
            submit(job)

        engine.submit = recording
        body = {**chat_body(3, max_tokens=max_tokens), "stream": True, "min_p": 0.0}
        request = urllib.request.Request(
            f"{url}/v1/chat/completions", data=json.dumps(body).encode(), headers={"content-type": "application/json"}
        )
        steps = engine.steps
        response = urllib.request.urlopen(request, timeout=60)
        for line in response:  # until the first text: the job is decoding
            if line.startswith(b"data: ") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                break
        response.close()
        deadline = time.monotonic() + 60
        while (engine.pending or engine.rows) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert engine.pending == 0 and engine.rows == []
        ran = engine.steps - steps
        assert len(jobs) == 1 and jobs[0].cancelled.is_set()
        # ended by the cancel: a job that ends on its own (a stop token, a stop string, its 2000 tokens) gets a Done
        ends = [e for e in events if not isinstance(e, Delta)]
        assert events and not ends, f"the job ran to its end after the client left: {ends}"
        assert ran < max_tokens // 4, f"{ran} decode steps after the client left"


def test_a_request_that_times_out_gets_504(tiny_chat_dir):
    import torch

    from damoxing.serve.app import ServeOptions

    with running_server(
        ServeOptions(str(tiny_chat_dir), model_name="tiny", request_timeout=0.0, dtype=torch.float64)
    ) as (url, _):
        status, _, body = http(f"{url}/v1/chat/completions", chat_body(1))
        assert status == 504 and body["error"]["code"] == "timeout"


def kept_conversation(engine, prompt_ids: list[int]) -> list[int]:
    """The token ids of the one conversation the (idle) engine keeps that starts with prompt_ids."""
    found = [entry.ids for entry in engine.prefixes.kept if entry.ids[: len(prompt_ids)] == prompt_ids]
    assert len(found) == 1, f"{len(found)} kept conversations start with this prompt"
    return found[0]


def test_a_continued_conversation_runs_only_its_new_tokens(tiny_server, tiny_chat_dir):
    url, app = tiny_server
    engine = app.state.engine
    tokenizer = damoxing.load_tokenizer(tiny_chat_dir)
    messages = [{"role": "user", "content": "Tell me about the sea, in many words."}]
    status, _, first = http(
        f"{url}/v1/chat/completions", {"model": "tiny", "messages": messages, "max_tokens": 16, "temperature": 0}
    )
    assert status == 200
    # the engine kept the conversation's keys and values: the prompt and every reply token it fed back
    usage = first["usage"]
    prompt_ids = tokenizer.encode(tokenizer.apply_chat_template(messages), add_special_tokens=False)
    kept = kept_conversation(engine, prompt_ids)
    assert len(kept) == usage["total_tokens"] - 1  # all but the last reply token, which was never fed
    messages += [first["choices"][0]["message"], {"role": "user", "content": "And the sky?"}]
    status, _, second = http(
        f"{url}/v1/chat/completions", {"model": "tiny", "messages": messages, "max_tokens": 4, "temperature": 0}
    )
    assert status == 200
    prompt = tokenizer.encode(tokenizer.apply_chat_template(messages), add_special_tokens=False)
    assert second["usage"]["prompt_tokens"] == len(prompt)
    # every token the new prompt shares with the kept conversation came from the cache, and nothing else: the
    # model ran only the rest. This tiny model's reply is newlines, which the template renders anew as "\n\n\n\n"
    # tokens merged with the prompt's final "\n", so here the two share the first prompt but for that "\n"
    shared = common_prefix(prompt, kept)
    assert engine.reused == shared >= len(prompt_ids) - 1
    # and the answer is the one a fresh run gives
    model = damoxing.load(tiny_chat_dir).double()
    assert second["choices"][0]["message"]["content"] == generate_text(
        model, tokenizer, prompt, GenerationConfig(max_new_tokens=4, stop_token_ids=(tokenizer.eos_id,))
    )


def test_two_interleaved_conversations_each_run_only_their_new_tokens(tiny_server):
    """Conversations A and B take turns (A1 B1 A2 B2 A3 B3): each continued request finds its own conversation
    kept, B's turns in between did not push A's out, and the model runs only the tokens after it: the last reply
    token (never fed), the template's end of turn and the new message. The replies are sampled with seeds whose
    text re-tokenizes to the same tokens, so that the whole conversation so far can be reused."""
    url, app = tiny_server
    engine, tokenizer = app.state.engine, app.state.served.tokenizer
    conversations = {
        "A": [{"role": "user", "content": "Tell me about the sea, the waves and the ships that sail on it."}],
        "B": [{"role": "user", "content": "What do you know about mountains, glaciers and the snow on them?"}],
    }
    kept: dict[str, list[int]] = {}
    for turn in range(3):
        for name, messages in conversations.items():
            prompt = tokenizer.encode(tokenizer.apply_chat_template(messages), add_special_tokens=False)
            body = {"model": "tiny", "messages": messages, "max_tokens": 8, "temperature": 1.0, "seed": SEEDS[turn]}
            status, _, reply = http(f"{url}/v1/chat/completions", body)
            assert status == 200, reply
            assert reply["usage"]["prompt_tokens"] == len(prompt)
            if turn:
                before = kept[name]  # this conversation so far: its last prompt and all but its reply's last token
                assert prompt[: len(before)] == before, "the reply's text re-tokenizes otherwise: choose other SEEDS"
                assert engine.reused == len(before), (name, turn)
            kept[name] = kept_conversation(engine, prompt)
            assert len(kept[name]) == len(prompt) + reply["usage"]["completion_tokens"] - 1
            messages += [reply["choices"][0]["message"], {"role": "user", "content": f"And then? ({turn})"}]
    assert {tuple(ids) for ids in kept.values()} <= {tuple(entry.ids) for entry in engine.prefixes.kept}
