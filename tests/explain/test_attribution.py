"""Integrated Gradients through captum: completeness on a real fine-tuned model, next-token and image attributions."""

from __future__ import annotations

import pytest
import torch

import damoxing
from damoxing.errors import UserError
from damoxing.explain import attribute_image, attribute_text
from damoxing.io.finetuned import load_finetuned


def test_completeness_on_fine_tuned_minilm_in_float64(minilm_classifier):
    """sum(attributions) = f(text) - f(baseline) within 1e-3 of the difference: Integrated Gradients is exact in
    the limit of steps, and 300 Gauss-Legendre nodes on a smooth network in float64 leave far less than that."""
    model, tokenizer, meta = load_finetuned(minilm_classifier)
    model.double()
    result = attribute_text(
        model, tokenizer, "this phone is great, I love it", labels=meta["labels"], n_steps=300, internal_batch_size=100
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
