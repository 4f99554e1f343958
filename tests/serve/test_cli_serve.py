"""`damoxing serve` as a user runs it: the engine decodes on the main thread, uvicorn answers beside it, and Ctrl-C
stops both cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from .conftest import free_port, http


def test_serve_command_answers_and_stops_on_ctrl_c(tiny_chat_dir):
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "damoxing", "serve", str(tiny_chat_dir), "--port", str(port)]
    command += ["--model-name", "tiny"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 120
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                if http(f"{url}/health", timeout=2)[0] == 200:
                    break
            except OSError:  # not listening yet
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        status, _, body = http(f"{url}/v1/completions", {"model": "tiny", "prompt": "Hello", "max_tokens": 4})
        assert status == 200 and body["usage"]["completion_tokens"] >= 1  # decoded by engine.run() on main
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        assert "Traceback" not in err
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_serve_command_stops_cleanly_on_sigterm(tiny_chat_dir):
    """What a service manager or `kill` sends: the same clean stop as Ctrl-C (uvicorn runs beside the main thread,
    so its own SIGTERM handler is not installed; the command installs one)."""
    port = free_port()
    command = [sys.executable, "-m", "damoxing", "serve", str(tiny_chat_dir), "--port", str(port)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                if http(f"http://127.0.0.1:{port}/health", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        assert "Traceback" not in err and "Shutting down" in err
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
