"""Streaming metrics against scikit-learn, scipy, torchmetrics and sacrebleu on fixed predictions."""

import math

import numpy as np
import pytest
import sacrebleu
import scipy.stats
import torch
from sklearn import metrics as skm
from torchmetrics.functional.classification import multiclass_calibration_error

from damoxing.evaluation import ClassificationMetrics, LanguageModelMetrics, RegressionMetrics, bleu

EPS32, EPS64 = torch.finfo(torch.float32).eps, torch.finfo(torch.float64).eps
# torchmetrics divides integer counts in float32 and averages <= 5 classes (weights, sums, one division): <= ~8
# roundings of eps32/2 on values <= 1. scikit-learn's float64 side is exact by comparison.
TOL = 8 * EPS32
# float64 sums over n <= 500 examples of values <= ~10 in another order: <= n * eps64 * 10 (~1e-12)
F64_TOL = 500 * 10 * EPS64


def logits_for(predicted: list[int], num_classes: int, seed: int = 0) -> torch.Tensor:
    """Random logits whose argmax is `predicted` (varied confidences)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(len(predicted), num_classes, generator=g)
    logits[torch.arange(len(predicted)), torch.tensor(predicted)] += 4.0 + 2 * torch.rand(len(predicted), generator=g)
    return logits


def stream(metric: ClassificationMetrics, logits: torch.Tensor, targets: torch.Tensor, batch: int = 5, texts=None):
    for start in range(0, len(targets), batch):
        chunk = texts[start : start + batch] if texts is not None else None
        metric.update(logits[start : start + batch], targets[start : start + batch], chunk)
    return metric.compute()


def assert_matches_sklearn(result: dict, y_true, y_pred, num_classes: int) -> None:
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=TOL)
    for average in ("macro", "micro", "weighted"):
        # sklearn's default labels: the classes present in y_true or y_pred.
        p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, average=average, zero_division=0)
        assert result[f"precision_{average}"] == pytest.approx(p, abs=TOL), average
        assert result[f"recall_{average}"] == pytest.approx(r, abs=TOL), average
        assert result[f"f1_{average}"] == pytest.approx(f, abs=TOL), average
        assert result[f"f1_{average}"] == pytest.approx(
            skm.f1_score(y_true, y_pred, average=average, zero_division=0), abs=TOL
        )
    labels = list(range(num_classes))
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    rows = result["per_class"]
    assert len(rows) == num_classes
    np.testing.assert_allclose([row["precision"] for row in rows], p, atol=TOL)
    np.testing.assert_allclose([row["recall"] for row in rows], r, atol=TOL)
    np.testing.assert_allclose([row["f1"] for row in rows], f, atol=TOL)
    assert [row["support"] for row in rows] == s.tolist()
    assert result["confusion_matrix"] == skm.confusion_matrix(y_true, y_pred, labels=labels).tolist()
    assert result["n"] == len(y_true)


def test_class_never_predicted_matches_sklearn():
    y_true = [0, 1, 2, 3, 0, 1, 2, 3, 0, 0, 1, 2, 3, 3, 1, 0, 2, 2, 1, 3, 0, 1, 3]
    y_pred = [0, 1, 2, 0, 0, 2, 2, 1, 1, 0, 1, 0, 2, 0, 1, 0, 2, 1, 1, 2, 2, 0, 1]  # class 3 never predicted
    metric = ClassificationMetrics(4, class_names=["a", "b", "c", "d"])
    result = stream(metric, logits_for(y_pred, 4), torch.tensor(y_true), batch=5)
    assert_matches_sklearn(result, y_true, y_pred, 4)
    assert result["per_class"][3] == {"class": "d", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 6}


def test_class_without_support_matches_sklearn():
    # class 2 is predicted but never a target; class 4 is neither (sklearn leaves it out of macro averages).
    y_true = [0, 1, 3, 0, 1, 3, 0, 0, 1, 3, 3, 1, 0]
    y_pred = [0, 2, 3, 2, 1, 3, 0, 1, 1, 0, 3, 2, 0]
    metric = ClassificationMetrics(5)
    result = stream(metric, logits_for(y_pred, 5, seed=1), torch.tensor(y_true), batch=4)
    assert_matches_sklearn(result, y_true, y_pred, 5)
    assert result["per_class"][2]["support"] == 0 and result["per_class"][2]["precision"] == 0.0
    assert result["per_class"][4] == {"class": "4", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_probabilities_and_logits_give_the_same_result():
    y_pred = [0, 1, 2, 2, 1, 0, 1, 2]
    y_true = torch.tensor([0, 1, 1, 2, 1, 0, 2, 2])
    logits = logits_for(y_pred, 3, seed=2)
    from_logits = stream(ClassificationMetrics(3), logits, y_true, batch=3)
    from_probs = stream(ClassificationMetrics(3), logits.softmax(dim=1), y_true, batch=3)
    # the float32 softmax is off by <= (|x - max| + 2 + C) eps32 relative (x - max rounds, exp 1 ulp, C-term sum,
    # division); ECE moves by at most the largest confidence error (no confidence is within 8e-4 of a bin edge)
    tol = (2 * logits.abs().max().item() + 2 + 3) * EPS32
    assert from_logits["ece"] == pytest.approx(from_probs["ece"], abs=tol)
    assert from_logits["f1_macro"] == from_probs["f1_macro"]


def reference_ece(probs: np.ndarray, targets: np.ndarray, n_bins: int = 15) -> float:
    """Plain numpy ECE: 15 equal-width bins on the max probability, |accuracy - confidence| weighted."""
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    correct = (predicted == targets).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece = 0.0
    for b in range(n_bins):
        upper_ok = confidence < edges[b + 1] if b < n_bins - 1 else confidence <= 1.0
        in_bin = (confidence >= edges[b]) & upper_ok
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return ece


def test_ece_matches_reference_and_torchmetrics():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(500, 6, generator=g) * 2
    targets = torch.randint(0, 6, (500,), generator=g)
    result = stream(ClassificationMetrics(6), logits, targets, batch=64)
    probs = logits.double().softmax(dim=1)
    assert result["ece"] == pytest.approx(reference_ece(probs.numpy(), targets.numpy()), abs=F64_TOL)
    torchmetrics_ece = multiclass_calibration_error(probs, targets, num_classes=6, n_bins=15, norm="l1")
    # torchmetrics bins in float32: a bin's running sum of <= 500 confidences <= 1 is off by <= 500 eps32 / 2, and
    # so is ECE (at worst); no confidence lies within 3e-5 of a bin edge, so its float32 rounding moves none across
    assert result["ece"] == pytest.approx(float(torchmetrics_ece), abs=500 * EPS32)
    bins = result["calibration_bins"]
    assert len(bins) == 15 and sum(b["count"] for b in bins) == 500
    assert all(b["lower"] <= b["confidence"] <= b["upper"] for b in bins if b["count"])


def test_state_does_not_grow_with_updates():
    g = torch.Generator().manual_seed(4)
    metric = ClassificationMetrics(5, worst_k=7)

    def state_numel() -> int:
        total = metric._bin_count.numel() + metric._bin_confidence.numel() + metric._bin_correct.numel()
        for child in metric._metrics.values():
            for value in child.metric_state.values():
                assert isinstance(value, torch.Tensor), "a list state would grow with every update"
                total += value.numel()
        return total

    all_logits, all_targets = [], []
    for step in range(40):
        logits, targets = torch.randn(32, 5, generator=g) * 3, torch.randint(0, 5, (32,), generator=g)
        metric.update(logits, targets)
        all_logits.append(logits)
        all_targets.append(targets)
        if step == 0:
            size_after_one = state_numel()
    assert state_numel() == size_after_one
    assert len(metric._worst) == 7
    # The kept examples are exactly the 7 most confident mistakes over all 1280 rows.
    probs = torch.cat(all_logits).double().softmax(dim=1)
    targets = torch.cat(all_targets)
    confidence, predicted = probs.max(dim=1)
    wrong = (predicted != targets).nonzero().squeeze(1)
    expected = wrong[confidence[wrong].argsort(descending=True)[:7]].tolist()
    worst = metric.compute()["worst_examples"]
    assert [ex["index"] for ex in worst] == expected
    assert all(ex["true"] != ex["predicted"] for ex in worst)


def test_worst_examples_carry_texts_and_skip_ignored_rows():
    metric = ClassificationMetrics(2, class_names=["neg", "pos"], worst_k=2, ignore_index=-100)
    logits = torch.tensor([[3.0, 0.0], [0.0, 1.0], [5.0, 0.0], [0.0, 2.0]])
    metric.update(logits[:2], torch.tensor([1, -100]), ["sure but wrong", "ignored"])
    metric.update(logits[2:], torch.tensor([1, 1]), ["very sure, wrong", "right"])
    result = metric.compute()
    assert result["n"] == 3
    assert [(ex["index"], ex["text"], ex["true"], ex["predicted"]) for ex in result["worst_examples"]] == [
        (2, "very sure, wrong", "pos", "neg"),
        (0, "sure but wrong", "pos", "neg"),
    ]
    # float64 softmax of [5, 0] against 1 / (1 + e^-5): an exp (1 ulp), a sum and a division on each side
    assert result["worst_examples"][0]["confidence"] == pytest.approx(1 / (1 + math.exp(-5.0)), rel=4 * EPS64)


def test_bad_inputs_raise():
    metric = ClassificationMetrics(3)
    with pytest.raises(ValueError, match="before any example"):
        metric.compute()
    with pytest.raises(ValueError, match="shape"):
        metric.update(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="targets must lie"):
        metric.update(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="class names"):
        ClassificationMetrics(3, class_names=["a", "b"])


def test_regression_matches_scipy_and_sklearn():
    rng = np.random.default_rng(5)
    targets = rng.normal(size=300) * 2 + 1
    predictions = np.round(targets + rng.normal(size=300) * 0.5, 1)  # rounding creates ties for Spearman
    metric = RegressionMetrics()
    for start in range(0, 300, 32):
        metric.update(
            torch.tensor(predictions[start : start + 32]).float().unsqueeze(1),
            torch.tensor(targets[start : start + 32]),
        )
    result = metric.compute()
    # Inputs went through float32 once; compare against the same values. Both sides then sum in float64.
    predictions = predictions.astype(np.float32).astype(np.float64)
    assert result["n"] == 300
    assert result["mse"] == pytest.approx(skm.mean_squared_error(targets, predictions), abs=F64_TOL)
    assert result["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(targets, predictions)), abs=F64_TOL)
    assert result["mae"] == pytest.approx(skm.mean_absolute_error(targets, predictions), abs=F64_TOL)
    assert result["r2"] == pytest.approx(skm.r2_score(targets, predictions), abs=F64_TOL)
    assert result["pearson"] == pytest.approx(scipy.stats.pearsonr(predictions, targets)[0], abs=F64_TOL)
    assert result["spearman"] == pytest.approx(scipy.stats.spearmanr(predictions, targets)[0], abs=F64_TOL)


def test_perplexity_is_exp_of_mean_token_loss():
    metric = LanguageModelMetrics()
    metric.update(6.0, 3)
    metric.update(torch.tensor(2.0), 1)
    result = metric.compute()
    assert result == {"task": "language_model", "loss": 2.0, "perplexity": math.exp(2.0), "tokens": 4}  # 8 / 4 exactly
    metric.update(1e6, 1)
    assert metric.compute()["perplexity"] == math.inf


def test_bleu_matches_sacrebleu():
    hypotheses = ["the cat sat on the mat", "a quick brown dog jumps over the lazy fox", "hello there world"]
    references = ["the cat is on the mat", "the quick brown fox jumps over the lazy dog", "hello world"]
    result = bleu(hypotheses, references)
    expected = sacrebleu.corpus_bleu(hypotheses, [references])
    # the same sacrebleu arithmetic on the same counts: equal to the bit
    assert (result["score"], result["precisions"], result["bp"]) == (expected.score, expected.precisions, expected.bp)
    assert 0 < result["score"] < 100
    assert "tok:13a" in result["signature"]
    # exp(mean of log 100 (%)) in float64: the log's rounding comes back as |log 100| ~ 4.6 eps relative, plus ~3 more
    assert bleu(references, references)["score"] == pytest.approx(100.0, rel=16 * EPS64)


def test_bleu_with_several_references_per_hypothesis():
    hypotheses = ["the cat sat on the mat", "hello there world"]
    references = [["the cat is on the mat", "a cat sat on the mat"], ["hello world", "hello there world"]]
    expected = sacrebleu.corpus_bleu(hypotheses, [[r[0] for r in references], [r[1] for r in references]])
    assert bleu(hypotheses, references)["score"] == expected.score  # the same sacrebleu arithmetic
    with pytest.raises(ValueError, match="same number of references"):
        bleu(hypotheses, [["a"], ["b", "c"]])
