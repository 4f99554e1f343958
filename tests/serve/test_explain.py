"""POST /v1/explain on a served classifier, its bounds, and the playground's explain view in headless Chromium."""

from __future__ import annotations

import math
import os

import pytest
import torch

import damoxing
from damoxing.io.finetuned import save_finetuned
from damoxing.serve.app import ServeOptions
from damoxing.tokenizer import Tokenizer

from .conftest import http, running_server

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def classifier_server(tmp_path_factory):
    """A tiny random encoder classifier (hidden 32, 2 layers, 32 tokens at most), served: (base URL, app)."""
    folder = tmp_path_factory.mktemp("served-clf")
    corpus = folder / "corpus.txt"
    corpus.write_text("good bad phone day great awful the a is\n", encoding="utf-8")
    tok = Tokenizer.train_wordpiece([corpus], vocab_size=60, min_frequency=1, model_max_length=32)
    torch.manual_seed(0)
    cfg = damoxing.preset(
        "bert-tiny",
        vocab_size=tok.vocab_size,
        dim=32,
        layers=2,
        heads=2,
        mlp_dim=64,
        max_positions=32,
        head="sequence",
        num_labels=2,
    )
    model = damoxing.create_model(cfg)
    model.labels = ["neg", "pos"]
    save_finetuned(model, tok, folder / "model", {"task": "classification", "max_length": 32})
    with running_server(ServeOptions(str(folder / "model"), model_name="clf")) as (url, app):
        yield url, app


def test_explain_returns_tokens_with_attributions(classifier_server):
    url, _ = classifier_server
    status, _, body = http(f"{url}/v1/explain", {"model": "clf", "input": "the phone is great", "steps": 64})
    assert status == 200, body
    assert body["object"] == "explanation" and body["tokens"][0] == "[CLS]" and "great" in body["tokens"]
    assert len(body["scores"]) == len(body["tokens"]) and body["steps"] == 64
    _, _, classified = http(f"{url}/v1/classify", {"model": "clf", "input": "the phone is great"})
    assert body["label"] == classified["data"][0]["label"]
    assert math.isclose(body["probability"], classified["data"][0]["probability"], rel_tol=1e-4)
    gap = body["output"] - body["baseline_output"]
    assert math.isclose(sum(body["scores"]) - gap, body["delta"], rel_tol=1e-4, abs_tol=1e-6)  # captum's own delta


@pytest.mark.parametrize(
    ("request_body", "param", "says"),
    [
        ({"model": "clf", "input": ""}, "input", "at least 1 character"),
        ({"model": "clf", "input": "   "}, "input", "the text is empty"),
        ({"model": "clf", "input": "good " * 40}, "input", "tokens long, more than the 32"),
        ({"model": "clf", "input": "x" * 20_001}, "input", "at most 20000 characters"),
        ({"model": "clf", "input": "good", "steps": 1000}, "steps", "less than or equal to 200"),
        ({"model": "other", "input": "good"}, "model", "not served here"),
    ],
)
def test_bad_explain_requests_get_one_clear_400(classifier_server, request_body, param, says):
    url, _ = classifier_server
    status, _, body = http(f"{url}/v1/explain", request_body)
    assert status in (400, 404) and body["error"]["param"] == param, body
    assert says in body["error"]["message"]


def test_a_server_without_a_classifier_cannot_explain(tiny_server):
    url, _ = tiny_server
    status, _, body = http(f"{url}/v1/explain", {"model": "tiny", "input": "hello"})
    assert status == 400 and "cannot explain a classification" in body["error"]["message"]


def test_the_playground_highlights_the_explained_tokens(classifier_server, tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (a test dependency)")
    url, _ = classifier_server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.goto(url + "/")
            page.wait_for_selector("#tab-classify:not([hidden])")
            page.click("#tab-classify")
            page.fill("#classify-input", "the phone is great")
            page.click("#explain-run")
            page.wait_for_selector("#explain-tokens span")
            great = page.locator("#explain-tokens span", has_text="great")
            assert great.count() == 1 and great.is_visible()
            background = great.evaluate("e => getComputedStyle(e).backgroundColor")
            assert background.startswith("rgba(") and float(background.split(",")[-1].rstrip(") ")) > 0.05
            assert "captum's delta" in page.text_content("#explain-summary")
            page.screenshot(path=str(tmp_path / "explain-view.png"))
        finally:
            browser.close()
