"""The web playground in a real headless Chromium (Debian's, driven by Playwright): type a prompt, watch the
streamed tokens appear; the screenshot stays in the test's temporary folder."""

from __future__ import annotations

import os
import time

import pytest

from .conftest import http

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (a test dependency)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


def test_the_playground_is_package_data_without_a_cdn(tiny_server):
    url, _ = tiny_server
    for page in ("/", "/static/app.js", "/static/style.css"):
        status, _, text = http(f"{url}{page}")
        assert status == 200 and "http://" not in text and "https://" not in text, page


def test_chat_tab_streams_tokens_into_the_page(tiny_server, browser, tmp_path, monkeypatch):
    url, app = tiny_server
    model = app.state.engine.model
    head = model.forward_head

    def slow_head(*args):  # 20 ms a token, as a real model takes: tokens reach the page one by one, not in a burst
        time.sleep(0.02)
        return head(*args)

    monkeypatch.setattr(model, "forward_head", slow_head)
    page = browser.new_page()
    seen = []  # the reply's length each time the page changed it: it grows token by token
    page.expose_function("noteLength", lambda n: seen.append(n))
    page.goto(url + "/")
    page.wait_for_selector("#tab-chat:not([hidden])")
    assert page.is_hidden("#tab-classify") and page.is_hidden("#tab-embeddings")  # a decoder: chat only
    page.evaluate("""() => new MutationObserver(() => {
        const reply = document.querySelector('.message.assistant');
        if (reply) window.noteLength(reply.textContent.length);
    }).observe(document.getElementById('messages'), {childList: true, subtree: true, characterData: true})""")
    page.fill("#max-tokens", "24")
    page.fill("#temperature", "0")
    page.fill("#prompt", "Hello! Who are you?")
    page.press("#prompt", "Enter")
    page.wait_for_selector("#chat-stats:not(:empty)", timeout=60_000)
    reply = page.text_content(".message.assistant")
    page.evaluate("document.getElementById('messages').scrollTop = 0")  # the random model writes many blank lines
    page.screenshot(path=str(tmp_path / "playground-chat.png"), full_page=True)
    assert (tmp_path / "playground-chat.png").stat().st_size > 1000
    assert page.text_content(".message.user") == "Hello! Who are you?"
    assert reply and page.is_hidden("#error")
    assert len({n for n in seen if 0 < n < len(reply)}) >= 2, f"the reply did not stream: lengths {seen}"
    assert "tokens/s" in page.text_content("#chat-stats")
    page.close()
