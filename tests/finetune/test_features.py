"""The features method caches embeddings on disk: a re-run embeds nothing; any change misses the cache."""

from __future__ import annotations

import pytest
import torch

from damoxing.finetune import features as features_module
from damoxing.finetune.features import cached_features, fit_linear_head
from damoxing.recipes.finetune import finetune
from damoxing.tasks import get_task

CLASSIFICATION = get_task("classification")

from .conftest import config


def test_second_run_reads_the_cache_and_runs_no_forward_pass(
    make_encoder, tokenizer, topic_data, tmp_path, monkeypatch
):
    cfg = config(topic_data, "features", cache_dir=str(tmp_path / "cache"))
    first = finetune(cfg, tmp_path / "a", model=make_encoder(), tokenizer=tokenizer, verbose=False)
    assert first.from_cache is False and len(list((tmp_path / "cache").glob("*.safetensors"))) == 1

    def no_embedding(*args, **kwargs):
        raise AssertionError("embedded again despite the cache")

    monkeypatch.setattr(features_module, "embed", no_embedding)
    second = finetune(cfg, tmp_path / "b", model=make_encoder(), tokenizer=tokenizer, verbose=False)
    assert second.from_cache is True
    assert second.metrics["accuracy"] == first.metrics["accuracy"]
    for a, b in zip(first.model.head.parameters(), second.model.head.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(AssertionError, match="embedded again"):  # other weights: a new key, so it must embed
        finetune(cfg, tmp_path / "c", model=make_encoder(seed=1), tokenizer=tokenizer, verbose=False)


def test_cache_key_depends_on_data_and_max_length(make_encoder, tokenizer, tmp_path):
    model = make_encoder()
    records = [{"text": "a goal", "label": 0}, {"text": "new code", "label": 1}]
    a = cached_features(model, tokenizer, CLASSIFICATION, records, 32, tmp_path)
    assert cached_features(model, tokenizer, CLASSIFICATION, records, 32, tmp_path).from_cache
    assert not cached_features(model, tokenizer, CLASSIFICATION, records, 16, tmp_path).from_cache
    assert not cached_features(model, tokenizer, CLASSIFICATION, records[:1], 32, tmp_path).from_cache
    assert a.x.shape == (2, 32) and a.y.tolist() == [0, 1]


def test_linear_head_equals_the_logistic_regression(make_encoder):
    from sklearn.linear_model import LogisticRegression

    model = make_encoder()
    model.reset_head(3, "sequence")
    model.double()  # the head holds the fitted float64 weights unrounded
    g = torch.Generator().manual_seed(0)
    x = torch.randn(90, 32, generator=g) * 3 + 1
    y = torch.arange(90) % 3
    fit_linear_head(model, x, y, CLASSIFICATION)
    logits = model.head.classifier(x.double())
    # the same standardised inputs as fit_linear_head (numpy, float64), so scikit-learn takes the same steps
    X = x.double().numpy()
    z = (X - X.mean(0)) / (X.std(0) + 1e-6)
    expected = torch.from_numpy(LogisticRegression(max_iter=1000, random_state=0).fit(z, y.numpy()).predict_proba(z))
    # float64: folding the standardisation into the weights reorders sums of 32 terms |w x| <= ~1e2: <= 32 * eps * 1e2
    # ~ 1e-12 on the logits, less on probabilities; 1e-10 leaves room (float32 weights alone are ~1e-6 off)
    torch.testing.assert_close(logits.softmax(-1), expected, rtol=0, atol=1e-10)
