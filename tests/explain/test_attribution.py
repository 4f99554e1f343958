"""Integrated Gradients through captum: completeness on a real fine-tuned model, next-token and image attributions."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import damoxing
from damoxing.errors import UserError
from damoxing.explain import attribute_image, attribute_text
from damoxing.io.finetuned import load_finetuned


def test_completeness_on_fine_tuned_minilm_in_float64(minilm_classifier):
    """sum(attributions) = f(text) - f(baseline) within 1e-3 of the difference: Integrated Gradients is exact in
    the limit of steps, and Gauss-Legendre quadrature converges fast on a smooth network (float64, this text: relative
    error 5e-4 at 25 nodes, 1e-6 at 50, 2e-9 at 100), so 100 nodes leave a wide margin."""
    model, tokenizer, meta = load_finetuned(minilm_classifier)
    model.double()
    result = attribute_text(
        model, tokenizer, "this phone is great, I love it", labels=meta["labels"], n_steps=100, internal_batch_size=100
    )
    gap = result.output - result.baseline_output
    assert abs(gap) > 0.1  # the text moves the logit: the check below is not vacuous
    assert abs(sum(result.scores) - gap) <= 1e-3 * abs(gap)
    assert abs(result.delta) <= 1e-3 * abs(gap)  # captum's delta says the same
    assert result.target_name == "pos" and result.probability > 0.5
    assert result.tokens[0] == "[CLS]" and result.tokens[-1] == "[SEP]"
    assert result.scores[0] == 0.0 and result.scores[-1] == 0.0  # kept in the baseline: no path, no attribution
    top = result.tokens[max(range(len(result.scores)), key=result.scores.__getitem__)]
    assert top in ("great", "love")  # the sentiment words carry the prediction


def completeness_gap(result) -> tuple[float, float]:
    gap = result.output - result.baseline_output
    return abs(sum(result.scores) - gap), abs(gap)


def test_next_token_attribution_of_a_causal_lm(tiny_chat_dir):
    """A decoder (Llama: rope, grouped-query heads) attributes the log-probability of the next token it predicts."""
    model, tokenizer = damoxing.load(tiny_chat_dir), damoxing.load_tokenizer(tiny_chat_dir)
    model.double()
    result = attribute_text(model, tokenizer, "The capital of France is", n_steps=100)
    assert result.kind == "next-token"
    with torch.no_grad():
        logits = model(torch.tensor([result.ids]))[0, -1]
    assert result.target == int(logits.argmax())
    assert result.probability == pytest.approx(float(logits.softmax(-1).max()), rel=1e-9)
    error, gap = completeness_gap(result)
    assert error <= 1e-3 * gap and abs(result.delta) <= 1e-3 * gap


def test_image_attribution_on_pixels():
    torch.manual_seed(0)
    cfg = damoxing.preset("vit-tiny", image_size=8, patch_size=4, dim=32, layers=2, heads=4, mlp_dim=64)
    model = damoxing.create_model(dataclasses.replace(cfg, head="sequence", num_labels=3)).double().eval()
    image = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    result = attribute_image(model, image, labels=["a", "b", "c"], n_steps=100)
    assert result.attributions.shape == (1, 8, 8)
    gap = result.output - result.baseline_output
    assert abs(float(result.attributions.sum()) - gap) <= 1e-3 * abs(gap)
    assert abs(result.delta) <= 1e-3 * abs(gap)
    assert result.target_name == "abc"[int(model(image).argmax())]


def test_bad_text_input_is_a_user_error(tiny_classifier):
    model, tokenizer, _meta = load_finetuned(tiny_classifier["model"])
    with pytest.raises(UserError, match="the text is empty"):
        attribute_text(model, tokenizer, "  \n")
    with pytest.raises(UserError, match="tokens long, more than the 32"):
        attribute_text(model, tokenizer, "good " * 40, max_length=32)
    cut = attribute_text(model, tokenizer, "good " * 40, max_length=32, cut=True, n_steps=4)
    assert len(cut.tokens) == 32 and "cut from 42 to 32 tokens" in cut.note
    bare = damoxing.create_model(dataclasses.replace(model.config, head="none"))
    with pytest.raises(UserError, match="'none' head"):
        attribute_text(bare, tokenizer, "good")
