"""A real server on 127.0.0.1 (a free port) in a background thread, for the openai client and plain HTTP."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(options):
    """Yield the base URL (http://127.0.0.1:PORT) of a server for `options` until the block ends."""
    import uvicorn

    from damoxing.serve.app import create_app

    app = create_app(options)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def tiny_server(tiny_chat_dir):
    """The tiny random chat model served in float64 (so that batched and lone decoding pick the same tokens: no
    near-tie flips with the order of additions) with small limits: (base URL, app)."""
    import torch

    from damoxing.serve.app import ServeOptions

    options = ServeOptions(
        str(tiny_chat_dir),
        model_name="tiny",
        max_queue=16,
        max_prompt_tokens=512,
        max_tokens=64,
        request_timeout=60,
        dtype=torch.float64,
    )
    with running_server(options) as (url, app):
        yield url, app


def http(url: str, body: str | bytes | dict | None = None, headers: dict | None = None, timeout: float = 60):
    """(status, headers with lower-case names, parsed JSON or text) of a GET (no body) or POST to `url`."""
    import json
    import urllib.error
    import urllib.request

    data = None if body is None else (json.dumps(body) if isinstance(body, dict) else body)
    data = data.encode() if isinstance(data, str) else data
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, head, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, head, raw = error.code, error.headers, error.read()
    head = {name.lower(): value for name, value in head.items()}
    try:
        return status, head, json.loads(raw)
    except ValueError:
        return status, head, raw.decode(errors="replace")
