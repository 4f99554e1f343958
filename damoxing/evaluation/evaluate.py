"""Evaluate a model on labelled records, one batch at a time, through its task.

    metrics = evaluate_records(model, tokenizer, task, records, names=labels, max_length=128)

Classification (sequence, pair or token): accuracy, precision / recall / F1 (macro, micro, weighted, per
class), confusion matrix, expected calibration error and the most confident mistakes; regression: MSE,
RMSE, MAE, R², Pearson, Spearman; language models: loss and perplexity. The metrics keep counts only, so
memory does not grow with the data. `damoxing evaluate` (recipes/evaluate.py) loads a folder and writes
the report.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ..errors import DataError
from ..tasks import SupervisedTask, chunks


def on_cpu(outputs):
    """A task's outputs on the CPU: a float tensor, or a dict of tensors and numbers (translation)."""
    if isinstance(outputs, dict):
        return {k: v.cpu() if torch.is_tensor(v) else v for k, v in outputs.items()}
    return outputs.float().cpu()


@torch.no_grad()
def evaluate_records(
    model,
    tokenizer,
    task: SupervisedTask,
    records: Iterable[dict],
    names: list[str],
    max_length: int | None,
    batch_size: int = 32,
    worst_k: int = 20,
) -> dict:
    """Metrics of `model` on labelled `records` (as `task.read` yields them) with label `names`."""
    model.eval()
    metrics = task.metrics(list(names), worst_k=worst_k, tokenizer=tokenizer)
    loss_sum, count = 0.0, 0
    for part in chunks(records, batch_size):
        batch = task.encode(tokenizer, part, max_length)
        labels = batch.pop("labels")
        batch = {k: v.to(model.device) for k, v in batch.items()}
        outputs = on_cpu(task.outputs(model, batch))
        loss, n = task.score(metrics, outputs, labels, part)
        loss_sum, count = loss_sum + loss, count + n
    if count == 0:
        raise DataError("no labelled examples to evaluate (the data has no records, or every token is ignored)")
    try:
        result = metrics.compute()
    except ValueError as e:
        raise DataError(f"cannot compute the metrics: {e}") from None
    result["loss"] = loss_sum / count
    return result
