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
from ..layers.losses import IGNORE_INDEX
from ..tasks import SupervisedTask, chunks
from ..tasks.base import SORT_WINDOW, length_sorted_batches, token_lengths


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
    batch_size: int = 64,
    worst_k: int = 20,
    by_length: bool = True,
) -> dict:
    """Metrics of `model` on labelled `records` (as `task.read` yields them) with label `names`.

    `by_length`: a classifier's or tagger's text is read SORT_WINDOW records at a time and run in batches of
    similar length (little padding is computed); the outputs are put back in the data's order and scored in
    the batches of the unsorted pass, so the metrics are the same."""
    model.eval()
    metrics = task.metrics(list(names), worst_k=worst_k, tokenizer=tokenizer)
    loss_sum, count = 0.0, 0
    by_length = by_length and task.unit == "tokens" and task.head in ("sequence", "token")  # (B, [T,] labels)
    for window in chunks(records, max(batch_size, SORT_WINDOW) if by_length else batch_size):
        if by_length:  # each record's outputs and labels, computed in length-sorted batches
            outs, ys = _outputs_in_order(model, tokenizer, task, window, max_length, batch_size)
        for start in range(0, len(window), batch_size):
            part = window[start : start + batch_size]
            if by_length:  # re-padded as the unsorted batch of these records
                outputs, labels = padded(outs[start : start + len(part)], 0.0), padded(ys[start : start + len(part)])
            else:
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


def _outputs_in_order(model, tokenizer, task, window: list[dict], max_length, batch_size) -> tuple[list, list]:
    """Each record's outputs and labels, computed in length-sorted batches; a token task's cut to the record's
    own tokens (so that re-padding gives what its unsorted batch would have)."""
    outputs, labels = [None] * len(window), [None] * len(window)
    lengths = token_lengths(task, tokenizer, window, max_length)
    for idx in length_sorted_batches(range(len(window)), lengths, batch_size):
        batch = task.encode(tokenizer, [window[i] for i in idx], max_length)
        y = batch.pop("labels")
        real = batch["attention_mask"].sum(-1).tolist()  # each row's tokens, padding left out
        batch = {k: v.to(model.device) for k, v in batch.items()}
        out = on_cpu(task.outputs(model, batch))
        for j, i in enumerate(idx):
            outputs[i] = out[j, : real[j]] if out.dim() > 2 else out[j]
            labels[i] = y[j, : real[j]] if y.dim() > 1 else y[j]
    return outputs, labels


def padded(rows: list[torch.Tensor], value: float = IGNORE_INDEX) -> torch.Tensor:
    """Per-record tensors stacked into a batch, right-padded along their first dimension with `value`."""
    if rows[0].dim() == 0:
        return torch.stack(rows)
    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=value)
