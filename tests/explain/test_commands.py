"""`damoxing explain`: the HTML page, one clear message for each kind of bad input, and the page in Chromium."""

from __future__ import annotations

import html
import os
import re

import pytest

from damoxing.cli import main

CHROMIUM = "/usr/bin/chromium"


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["explain", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_explain_writes_one_self_contained_page(tiny_classifier, tmp_path, capsys):
    text = 'the phone is great <script>alert("x")</script> love'
    code, out, err = run(capsys, tiny_classifier["model"], text, "--out", tmp_path / "x", "--steps", 20)
    assert code == 0, err
    page = (tmp_path / "x" / "explanation.html").read_text(encoding="utf-8")
    assert f"wrote {tmp_path / 'x' / 'explanation.html'}" in out
    assert "<script>" not in page  # the text's markup is escaped
    assert "http://" not in page and "https://" not in page and 'src="data:image/png;base64,' in page
    spans = re.findall(r'<span class="tok[^"]*" style="background: ([^"]+)"\s+title="([^"]+)">', page)
    assert any(title.startswith("great:") and bg.startswith("rgba(") for bg, title in spans)
    assert "prediction:</b> pos" in page and "captum's delta" in page and "Attention rollout" in page
    assert len(re.findall(r'alt="self layer \d"', page)) == 2  # one heatmap row per layer


def test_explain_first_rows_of_a_file(tiny_classifier, tmp_path, capsys):
    data = tmp_path / "texts.txt"
    data.write_text("good day\n\n" + "nice " * 80 + "\nbad phone\nawful\n", encoding="utf-8")
    code, _, err = run(capsys, tiny_classifier["model"], "--file", data, "--rows", 4, "--out", tmp_path, "--steps", 4)
    assert code == 0, err
    page = (tmp_path / "explanation.html").read_text(encoding="utf-8")
    for i in (1, 2, 3, 4):
        assert f"<h2>Row {i}</h2>" in page
    assert "Row 5" not in page
    assert "not explained: the row is empty" in page
    assert "cut from 82 to 32 tokens" in page  # rows of a file are cut to what the model reads, with a note


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("   ", "the text is empty: give a text to explain"),
        (
            "good " * 40,
            (
                "the text is 42 tokens long, more than the 32 this model reads; shorten it "
                "(or give --max-length, up to the model's positions)"
            ),
        ),
    ],
)
def test_bad_text_is_one_clear_message(tiny_classifier, tmp_path, capsys, text, message):
    code, out, err = run(capsys, tiny_classifier["model"], text, "--out", tmp_path)
    assert code == 2 and out == ""
    assert err.strip() == f"damoxing explain: error: {message}"
    assert "Traceback" not in err and not (tmp_path / "explanation.html").exists()


def test_a_model_without_a_head_is_one_clear_message(minilm_dir, tmp_path, capsys):
    code, _, err = run(capsys, minilm_dir, "good", "--out", tmp_path)
    assert code == 2 and "Traceback" not in err
    assert err.strip() == (
        "damoxing explain: error: this model has a 'none' head: explanations need a text classifier "
        "(fine-tune one with damoxing finetune) or a causal language model"
    )


def test_the_page_shows_highlighted_tokens_in_chromium(tiny_classifier, tmp_path, capsys):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (a test dependency)")
    assert run(capsys, tiny_classifier["model"], "the phone is great", "--out", tmp_path, "--steps", 8)[0] == 0
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.goto((tmp_path / "explanation.html").as_uri())
            great = page.locator(".attribution .tok", has_text="great")
            assert great.count() == 1 and great.is_visible()
            background = great.evaluate("e => getComputedStyle(e).backgroundColor")
            assert background.startswith("rgba(") and float(background.split(",")[-1].rstrip(") ")) > 0.05
            box = great.bounding_box()
            assert box["width"] > 0 and box["height"] > 0
            assert page.locator("img.rollout-map").evaluate("e => e.complete && e.naturalWidth > 0")
            page.screenshot(path=str(tmp_path / "explanation.png"), full_page=True)
        finally:
            browser.close()
    assert html.escape("great") in (tmp_path / "explanation.html").read_text(encoding="utf-8")


def test_explain_an_image_classifier(tmp_path, capsys):
    """A ViT classifier: the page shows the image, its pixel attributions and the rollout of [CLS]."""
    import dataclasses

    import numpy as np
    import torch
    from PIL import Image

    import damoxing
    from damoxing.data.processors import ImageProcessor
    from damoxing.io.finetuned import save_finetuned

    torch.manual_seed(0)
    cfg = damoxing.preset("vit-tiny", image_size=8, patch_size=4, dim=32, layers=2, heads=4, mlp_dim=64)
    model = damoxing.create_model(dataclasses.replace(cfg, head="sequence", num_labels=3))
    model.labels = ["a", "b", "c"]
    folder = save_finetuned(
        model, ImageProcessor(size=8, channels=1), tmp_path / "vit", {"task": "image_classification"}
    )
    image = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8), dtype=np.uint8)).save(image)
    code, _, err = run(capsys, folder, image, "--out", tmp_path / "out", "--steps", 16)
    assert code == 0, err
    page = (tmp_path / "out" / "explanation.html").read_text(encoding="utf-8")
    assert 'class="image-attribution"' in page and "captum's delta" in page
    assert len(re.findall(r'alt="self layer \d"', page)) == 2


def test_explain_the_next_token_of_a_causal_lm(tiny_chat_dir, tmp_path, capsys):
    code, _, err = run(capsys, tiny_chat_dir, "The capital of France is", "--out", tmp_path, "--steps", 8)
    assert code == 0, err
    page = (tmp_path / "explanation.html").read_text(encoding="utf-8")
    assert "<b>next token:</b>" in page and "Attention rollout" in page
    import damoxing

    last = len(damoxing.load_tokenizer(tiny_chat_dir)("The capital of France is")["input_ids"][0]) - 1
    assert f"(position {last})" in page  # a decoder's rollout is read from the last token
