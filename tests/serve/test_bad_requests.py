"""Bad requests get a 4xx JSON error in OpenAI's shape naming the field, and the server keeps serving."""

from __future__ import annotations

import pytest

from .conftest import http, running_server

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}


def post(url, path, body, **headers):
    return http(f"{url}{path}", body, headers)


@pytest.mark.parametrize(
    "path, body, param",
    [
        ("/v1/chat/completions", '{"model": "tiny", "messages": [', "body"),
        ("/v1/chat/completions", {**CHAT, "model": "gpt-4"}, "model"),
        ("/v1/chat/completions", {**CHAT, "max_tokens": -3}, "max_tokens"),
        ("/v1/chat/completions", {**CHAT, "max_tokens": 100000}, "max_tokens"),
        ("/v1/chat/completions", {**CHAT, "temperature": -0.5}, "temperature"),
        ("/v1/completions", {"model": "tiny", "prompt": "x" * 1_000_000, "max_tokens": 4}, "prompt"),
        ("/v1/chat/completions", {**CHAT, "messages": [{"role": "wizard", "content": "Hi"}]}, "messages.0.role"),
        ("/v1/chat/completions", {"model": "tiny", "max_tokens": 4}, "messages"),
        ("/v1/completions", {"model": "tiny", "prompt": "Hi", "top_p": 0}, "top_p"),
        ("/v1/completions", {"model": "tiny", "prompt": "Hi", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ("/v1/embeddings", {"model": "tiny", "input": "Hi"}, "model"),
    ],
)
def test_bad_request_names_the_field_and_the_server_keeps_serving(tiny_server, path, body, param):
    url, _ = tiny_server
    status, _, answer = post(url, path, body)
    assert 400 <= status < 500, answer
    error = answer["error"]
    assert error["param"] == param and error["message"] and error["type"], error
    assert post(url, "/v1/chat/completions", CHAT)[0] == 200


def test_health_and_docs(tiny_server):
    url, _ = tiny_server
    assert http(f"{url}/health")[2]["status"] == "ok"
    assert http(f"{url}/docs")[0] == 200
    assert "/v1/chat/completions" in http(f"{url}/openapi.json")[2]["paths"]


def test_api_key_is_required_when_set(tiny_chat_dir):
    from damoxing.serve.app import ServeOptions

    with running_server(ServeOptions(str(tiny_chat_dir), model_name="tiny", api_key="sesame")) as (url, _):
        assert post(url, "/v1/chat/completions", CHAT)[0] == 401
        assert post(url, "/v1/chat/completions", CHAT, authorization="Bearer wrong")[0] == 401
        assert post(url, "/v1/chat/completions", CHAT, authorization="Bearer sesame")[0] == 200
        assert http(f"{url}/health")[0] == 200  # health checks need no key


def test_serve_binds_this_machine_only_by_default(tmp_path, capsys):
    from damoxing.cli import build_parser, main

    args = build_parser().parse_args(["serve", "model.gguf"])
    assert (args.host, args.port, args.api_key, args.max_queue) == ("127.0.0.1", 8000, None, 16)
    assert main(["serve", str(tmp_path / "missing")]) == 2  # one line, no traceback, no server
    err = capsys.readouterr().err
    assert err.startswith("damoxing serve: error: ") and "Traceback" not in err
