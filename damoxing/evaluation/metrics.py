"""Streaming evaluation metrics: feed batches with `update(...)`, read a JSON-ready dict with `compute()`.

The accumulators keep counts and sums, never the model's logits, so evaluating a large data set
costs no more memory than a small one (one exception: Spearman keeps two numbers per example).
The arithmetic is done by torchmetrics (classification, regression), scipy (Spearman) and sacrebleu
(BLEU); the only sums written here are the calibration bins, because torchmetrics' calibration
metric stores every prediction.

Conventions follow scikit-learn with `zero_division=0`: a precision, recall or F1 whose denominator
is zero counts as 0, and macro averages run over the classes that occur in the targets or in the
predictions (scikit-learn's default when `labels` is not given; torchmetrics does the same).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import sacrebleu
import scipy.stats
import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)
from torchmetrics.regression import (
    MeanAbsoluteError,
    MeanSquaredError,
    PearsonCorrCoef,
    R2Score,
)

AVERAGES = ("macro", "micro", "weighted")


def _as_probs(scores: torch.Tensor) -> torch.Tensor:
    """Class probabilities from `scores`: rows already non-negative and summing to 1 are kept, else softmax."""
    scores = scores.detach().to(torch.float64)
    is_probs = bool((scores >= 0).all()) and torch.allclose(
        scores.sum(dim=1), torch.ones(scores.shape[0], dtype=scores.dtype), atol=1e-3
    )
    return scores if is_probs else scores.softmax(dim=1)


class ClassificationMetrics:
    """Accuracy, precision/recall/F1 (macro, micro, weighted, per class), confusion matrix and ECE.

    State: the torchmetrics counters (O(num_classes^2) for the confusion matrix), `n_bins` calibration
    sums and a heap of at most `worst_k` misclassified examples (those predicted most confidently).
    Rows whose target equals `ignore_index` (e.g. -100 padding in token classification) are skipped.
    """

    def __init__(
        self,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        worst_k: int = 20,
        n_bins: int = 15,
        ignore_index: int | None = None,
    ) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"got {len(class_names)} class names for {num_classes} classes")
        self.num_classes = num_classes
        self.class_names = [str(c) for c in (class_names if class_names is not None else range(num_classes))]
        self.worst_k = worst_k
        self.n_bins = n_bins
        self.ignore_index = ignore_index
        metrics: dict[str, Any] = {
            "accuracy": MulticlassAccuracy(num_classes, average="micro"),
            "confusion_matrix": MulticlassConfusionMatrix(num_classes),
        }
        kinds = {"precision": MulticlassPrecision, "recall": MulticlassRecall, "f1": MulticlassF1Score}
        for name, cls in kinds.items():
            for average in (*AVERAGES, "none"):
                metrics[f"{name}_{average}"] = cls(num_classes, average=average, zero_division=0)
        # compute_groups lets metrics with identical state (tp/fp/tn/fn per class) share one update.
        self._metrics = MetricCollection(metrics, compute_groups=True)
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far."""
        self._metrics.reset()
        self.n = 0
        self._rows_seen = 0  # rows passed to update(), ignored ones included: an example's "index"
        self._bin_count = torch.zeros(self.n_bins, dtype=torch.float64)
        self._bin_confidence = torch.zeros(self.n_bins, dtype=torch.float64)
        self._bin_correct = torch.zeros(self.n_bins, dtype=torch.float64)
        self._worst: list[tuple[float, int, dict[str, Any]]] = []  # min-heap on confidence
        self._tiebreak = itertools.count()

    @torch.no_grad()
    def update(self, scores: torch.Tensor, targets: torch.Tensor, texts: Sequence[str] | None = None) -> None:
        """Add a batch: `scores` (B, C) logits or probabilities, `targets` (B,) class ids, optional texts."""
        scores, targets = torch.as_tensor(scores).cpu(), torch.as_tensor(targets).cpu().long()
        if scores.ndim != 2 or scores.shape[1] != self.num_classes:
            raise ValueError(f"scores must have shape (batch, {self.num_classes}), got {tuple(scores.shape)}")
        if targets.shape != scores.shape[:1]:
            raise ValueError(f"targets must have shape ({scores.shape[0]},), got {tuple(targets.shape)}")
        if texts is not None and len(texts) != len(targets):
            raise ValueError(f"got {len(texts)} texts for a batch of {len(targets)}")
        first_row, batch_size = self._rows_seen, len(targets)
        keep = torch.ones_like(targets, dtype=torch.bool)
        if self.ignore_index is not None:
            keep = targets != self.ignore_index
            scores, targets = scores[keep], targets[keep]
        if targets.numel() and (targets.min() < 0 or targets.max() >= self.num_classes):
            raise ValueError(f"targets must lie in [0, {self.num_classes}), got {targets.min()}..{targets.max()}")
        self._rows_seen += batch_size
        if targets.numel() == 0:
            return

        probs = _as_probs(scores)
        self._metrics.update(probs, targets)
        confidence, predicted = probs.max(dim=1)
        correct = (predicted == targets).to(torch.float64)
        bins = (confidence * self.n_bins).long().clamp(max=self.n_bins - 1)  # [i/n, (i+1)/n); 1.0 in the last
        self._bin_count += torch.bincount(bins, minlength=self.n_bins).to(torch.float64)
        self._bin_confidence.index_add_(0, bins, confidence)
        self._bin_correct.index_add_(0, bins, correct)
        self.n += targets.numel()
        self._keep_worst(probs, confidence, predicted, targets, keep.nonzero().squeeze(1), texts, first_row)

    def _keep_worst(
        self,
        probs: torch.Tensor,
        confidence: torch.Tensor,
        predicted: torch.Tensor,
        targets: torch.Tensor,
        rows: torch.Tensor,
        texts: Sequence[str] | None,
        first_row: int,
    ) -> None:
        """Push this batch's most confident mistakes into the bounded heap; `rows` maps kept rows to batch rows."""
        wrong = (predicted != targets).nonzero().squeeze(1)
        if self.worst_k == 0 or wrong.numel() == 0:
            return
        wrong = wrong[confidence[wrong].argsort(descending=True)[: self.worst_k]]
        for i in wrong.tolist():
            conf = float(confidence[i])
            if len(self._worst) == self.worst_k and conf <= self._worst[0][0]:
                break  # sorted: the rest are no more confident
            row = int(rows[i])
            example = {
                "index": first_row + row,
                "text": texts[row] if texts is not None else None,
                "true": self.class_names[int(targets[i])],
                "predicted": self.class_names[int(predicted[i])],
                "confidence": conf,
                "true_probability": float(probs[i, targets[i]]),
            }
            item = (conf, next(self._tiebreak), example)
            if len(self._worst) < self.worst_k:
                heapq.heappush(self._worst, item)
            else:
                heapq.heapreplace(self._worst, item)

    def compute(self) -> dict[str, Any]:
        """All metrics as plain floats, ints, lists and dicts (JSON-ready).

        Keys: task, n, num_classes, accuracy, {precision,recall,f1}_{macro,micro,weighted}, ece,
        class_names, per_class, confusion_matrix (rows true, columns predicted), calibration_bins,
        worst_examples (most confident first).
        """
        if self.n == 0:
            raise ValueError("ClassificationMetrics.compute() called before any example was added")
        values = self._metrics.compute()
        confusion = values["confusion_matrix"].long()
        support = confusion.sum(dim=1)
        out: dict[str, Any] = {"task": "classification", "n": self.n, "num_classes": self.num_classes}
        out["accuracy"] = float(values["accuracy"])
        for name in ("precision", "recall", "f1"):
            for average in AVERAGES:
                out[f"{name}_{average}"] = float(values[f"{name}_{average}"])
        out["ece"] = self._ece()
        out["class_names"] = list(self.class_names)
        out["per_class"] = [
            {
                "class": self.class_names[c],
                "precision": float(values["precision_none"][c]),
                "recall": float(values["recall_none"][c]),
                "f1": float(values["f1_none"][c]),
                "support": int(support[c]),
            }
            for c in range(self.num_classes)
        ]
        out["confusion_matrix"] = confusion.tolist()
        out["calibration_bins"] = self._calibration_bins()
        out["worst_examples"] = [ex for _, _, ex in sorted(self._worst, key=lambda item: (-item[0], item[1]))]
        return out

    def _ece(self) -> float:
        """Expected calibration error (L1): sum over bins of |accuracy - confidence| weighted by bin size."""
        gap = (self._bin_correct - self._bin_confidence).abs()  # = count * |mean acc - mean conf|
        return float(gap.sum() / self.n)

    def _calibration_bins(self) -> list[dict[str, float]]:
        """Per-bin count, mean confidence and accuracy, for the reliability diagram."""
        rows = []
        for b in range(self.n_bins):
            count = float(self._bin_count[b])
            rows.append(
                {
                    "lower": b / self.n_bins,
                    "upper": (b + 1) / self.n_bins,
                    "count": int(count),
                    "confidence": float(self._bin_confidence[b] / count) if count else 0.0,
                    "accuracy": float(self._bin_correct[b] / count) if count else 0.0,
                }
            )
        return rows


class ImageClassificationMetrics(ClassificationMetrics):
    """ClassificationMetrics that also keep a thumbnail of each kept mistake, for the report's image grid.

    `update(..., images=fn)`: fn(row) gives the (C, H, W) uint8 image of a batch row; it is called only for
    rows that enter the worst-k heap, so at most worst_k thumbnails (of at most 64 pixels a side) are held.
    `compute()` adds "worst_images": (H, W, C) uint8 arrays aligned with "worst_examples" (not JSON: the
    report draws them and leaves them out of metrics.json).
    """

    THUMBNAIL = 64

    def reset(self) -> None:
        super().reset()
        self._thumbnails: dict[int, Any] = {}

    @torch.no_grad()
    def update(
        self,
        scores: torch.Tensor,
        targets: torch.Tensor,
        texts: Sequence[str] | None = None,
        images: Callable[[int], torch.Tensor] | None = None,
    ) -> None:
        first_row = self._rows_seen
        super().update(scores, targets, texts)
        if images is None:
            return
        kept = {example["index"] for _, _, example in self._worst}
        for index in kept - self._thumbnails.keys():  # mistakes of this batch that made the list
            self._thumbnails[index] = _thumbnail(images(index - first_row), self.THUMBNAIL)
        for index in self._thumbnails.keys() - kept:
            del self._thumbnails[index]

    def compute(self) -> dict[str, Any]:
        out = super().compute()
        out["worst_images"] = [self._thumbnails.get(example["index"]) for example in out["worst_examples"]]
        return out


def _thumbnail(image: torch.Tensor, side: int):
    """(C, H, W) uint8 -> (h, w, C) uint8 numpy array, at most `side` pixels a side."""
    _C, H, W = image.shape
    scale = min(1.0, side / max(H, W))
    if scale < 1.0:
        size = (max(1, round(H * scale)), max(1, round(W * scale)))
        image = torch.nn.functional.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True)[0]
    return image.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


class RegressionMetrics:
    """MSE, RMSE, MAE, R², Pearson and Spearman correlation for one predicted value per example.

    MSE, MAE, R² and Pearson are torchmetrics running sums. Spearman needs the ranks of all values,
    so the predictions and targets are kept (two numbers per example, never logits) and ranked by
    scipy at the end (torchmetrics' Spearman adds 1e-6 to its denominator, scipy's is exact).
    """

    def __init__(self) -> None:
        self._metrics = MetricCollection(
            {
                "mse": MeanSquaredError(),
                "mae": MeanAbsoluteError(),
                "r2": R2Score(),
                "pearson": PearsonCorrCoef(),
            }
        ).set_dtype(torch.float64)
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far."""
        self._metrics.reset()
        self._predictions: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []
        self.n = 0

    @torch.no_grad()
    def update(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a batch of predictions and targets, each (B,) or (B, 1)."""
        predictions = torch.as_tensor(predictions).detach().cpu().to(torch.float64).reshape(-1)
        targets = torch.as_tensor(targets).detach().cpu().to(torch.float64).reshape(-1)
        if predictions.shape != targets.shape:
            raise ValueError(f"predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)} differ")
        if predictions.numel() == 0:
            return
        self._metrics.update(predictions, targets)
        self._predictions.append(predictions)
        self._targets.append(targets)
        self.n += predictions.numel()

    def compute(self) -> dict[str, Any]:
        """mse, rmse, mae, r2, pearson, spearman and n as plain numbers."""
        if self.n < 2:
            raise ValueError(f"RegressionMetrics needs at least 2 examples, got {self.n}")
        values = {name: float(v) for name, v in self._metrics.compute().items()}
        values["rmse"] = math.sqrt(values["mse"])
        spearman = scipy.stats.spearmanr(torch.cat(self._predictions).numpy(), torch.cat(self._targets).numpy())
        values["spearman"] = float(spearman.statistic)
        order = ("mse", "rmse", "mae", "r2", "pearson", "spearman")
        return {"task": "regression", "n": self.n, **{name: values[name] for name in order}}


class LanguageModelMetrics:
    """Mean per-token loss and perplexity = exp(loss), from summed losses and token counts."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far."""
        self.loss_sum = 0.0
        self.tokens = 0

    def update(self, loss_sum: float | torch.Tensor, tokens: int) -> None:
        """Add a batch: the summed (not averaged) cross-entropy over its `tokens` predicted tokens."""
        self.loss_sum += float(loss_sum)
        self.tokens += int(tokens)

    def compute(self) -> dict[str, Any]:
        """loss (nats per token), perplexity and tokens."""
        if self.tokens == 0:
            raise ValueError("LanguageModelMetrics.compute() called before any token was added")
        loss = self.loss_sum / self.tokens
        perplexity = math.exp(loss) if loss < 709.0 else math.inf  # exp overflows a float beyond ~709.78
        return {"task": "language_model", "loss": loss, "perplexity": perplexity, "tokens": self.tokens}


def bleu(
    hypotheses: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    tokenize: str = "13a",
) -> dict[str, Any]:
    """Corpus BLEU with sacrebleu.

    `references` holds one reference per hypothesis (a list of strings) or several per hypothesis
    (a list of lists, every inner list the same length). Returns the score (0-100), the four n-gram
    precisions, the brevity penalty, lengths and sacrebleu's signature string.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"got {len(references)} references for {len(hypotheses)} hypotheses")
    per_hypothesis = [[r] if isinstance(r, str) else list(r) for r in references]
    n_refs = {len(refs) for refs in per_hypothesis}
    if len(n_refs) > 1:
        raise ValueError(f"every hypothesis needs the same number of references, got {sorted(n_refs)}")
    streams = [list(stream) for stream in zip(*per_hypothesis)]  # sacrebleu wants one list per reference set
    metric = sacrebleu.BLEU(tokenize=tokenize)
    result = metric.corpus_score(list(hypotheses), streams)
    return {
        "score": float(result.score),
        "precisions": [float(p) for p in result.precisions],
        "bp": float(result.bp),
        "ratio": float(result.ratio),
        "sys_len": int(result.sys_len),
        "ref_len": int(result.ref_len),
        "signature": str(metric.get_signature()),
    }


class TranslationMetrics:
    """Corpus BLEU and chrF (sacrebleu, with their signatures) of decoded texts against one reference each.

    Corpus metrics need every sentence's statistics, so the hypotheses and references are kept (text, not
    logits); `samples` of them, with their sources, go into the report. `tokenizer` is what turns generated
    ids into text for `update` (the translation task's `score` uses it).
    """

    def __init__(self, samples: int = 10, tokenizer=None) -> None:
        self.samples, self.tokenizer = samples, tokenizer
        self.reset()

    def reset(self) -> None:
        self.hypotheses: list[str] = []
        self.references: list[str] = []
        self.examples: list[dict[str, str]] = []

    def update(self, hypotheses: Sequence[str], references: Sequence[str], sources: Sequence[str]) -> None:
        if not len(hypotheses) == len(references) == len(sources):
            raise ValueError(f"got {len(hypotheses)} hypotheses, {len(references)} references, {len(sources)} sources")
        for source, reference, hypothesis in zip(sources, references, hypotheses):
            if len(self.examples) < self.samples:
                self.examples.append({"source": source, "reference": reference, "hypothesis": hypothesis})
        self.hypotheses += list(hypotheses)
        self.references += list(references)

    def compute(self) -> dict[str, Any]:
        """bleu, chrf (0-100), their sacrebleu signatures, the BLEU details and sample translations."""
        if not self.hypotheses:
            raise ValueError("TranslationMetrics.compute() called before any sentence was added")
        b = bleu(self.hypotheses, self.references)
        chrf = sacrebleu.CHRF()
        chrf_score = chrf.corpus_score(self.hypotheses, [self.references])
        return {
            "task": "translation",
            "bleu": b["score"],
            "chrf": float(chrf_score.score),
            "sentences": len(self.hypotheses),
            "bleu_signature": b["signature"],
            "chrf_signature": str(chrf.get_signature()),
            "bleu_precisions": b["precisions"],
            "brevity_penalty": b["bp"],
            "length_ratio": b["ratio"],
            "samples": list(self.examples),
        }
