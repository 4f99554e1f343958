"""`damoxing evaluate --model DIR --data FILE`: stream a labelled file through a model, compute and report metrics.

    metrics = evaluate_model("runs/x/model", "data/test.csv.gz", out_dir="runs/x/eval")

Classification (sequence or token): accuracy, precision / recall / F1 (macro, micro, weighted, per
class), confusion matrix, expected calibration error and the most confident mistakes; regression:
MSE, RMSE, MAE, R², Pearson, Spearman; language models (an `lm` head): loss and perplexity. The data is
read lazily and batch by batch: memory does not grow with the file (the metrics keep counts only).
Bad input (a malformed row, a label the model does not know, an empty file) is a DataError naming the
file and line.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data.labels import LabelMap
from ..errors import DataError
from ..evaluation.metrics import ClassificationMetrics, LanguageModelMetrics, RegressionMetrics
from ..finetune.encode import IGNORE_INDEX, chunks, encode, model_inputs
from ..finetune.records import iter_regression_records, iter_sequence_records, iter_token_records


def labelled_records(meta: dict, data: str | os.PathLike, skip_bad: bool = False) -> Iterator[dict]:
    """The file's records with label ids in the model's label order (an unknown label is an error)."""
    task = meta["task"]
    if task == "token":
        return iter_token_records(data, tokens_column=meta["tokens_column"], tags_column=meta["tags_column"],
                                  labels=LabelMap(meta["labels"]), skip_bad=skip_bad)
    common = dict(text_column=meta["text_column"], text_pair_column=meta["text_pair_column"],
                  label_column=meta["label_column"], skip_bad=skip_bad)
    if task == "regression":
        return iter_regression_records(data, **common)
    return iter_sequence_records(data, labels=LabelMap(meta["labels"]), **common)


@torch.no_grad()
def evaluate_records(model, tokenizer, meta: dict, records: Iterable[dict], batch_size: int = 32,
                     worst_k: int = 20) -> dict:
    """Metrics of `model` on labelled records (see `encode.encode` for their shape), one batch at a time."""
    model.eval()
    task, names = meta["task"], list(meta["labels"])
    if task == "regression":
        metrics = RegressionMetrics()
    else:
        metrics = ClassificationMetrics(len(names), names, worst_k=worst_k,
                                        ignore_index=IGNORE_INDEX if task == "token" else None)
    loss_sum, count = 0.0, 0
    for batch_records in chunks(records, batch_size):
        batch = encode(tokenizer, batch_records, meta.get("max_length"), task)
        labels = batch.pop("labels")
        batch = {k: v.to(model.device) for k, v in batch.items()}
        hidden = model.forward_features(**model_inputs(model, batch))
        out = model.forward_head(hidden, batch.get("attention_mask")).float().cpu()
        if task == "regression":
            pred = out.squeeze(-1)
            metrics.update(pred, labels)
            loss_sum += float(F.mse_loss(pred, labels, reduction="sum"))
            count += len(labels)
        elif task == "token":
            labels = labels[:, : out.shape[1]]
            metrics.update(out.flatten(0, 1), labels.flatten())
            loss_sum += float(F.cross_entropy(out.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX,
                                              reduction="sum"))
            count += int((labels != IGNORE_INDEX).sum())
        else:
            texts = [r.get("text") or f"{r.get('text_a')} || {r.get('text_b')}" for r in batch_records]
            metrics.update(out, labels, texts=[t[:300] for t in texts])
            loss_sum += float(F.cross_entropy(out, labels, reduction="sum"))
            count += len(labels)
    if count == 0:
        raise DataError("no labelled examples to evaluate (the data has no records, or every token is ignored)")
    try:
        result = metrics.compute()
    except ValueError as e:
        raise DataError(f"cannot compute the metrics: {e}") from None
    result["loss"] = loss_sum / count
    return result


@torch.no_grad()
def evaluate_language_model(model, tokenizer, data: str | os.PathLike, max_length: int = 512,
                            batch_size: int = 8, text_column: str = "text") -> dict:
    """Mean next-token loss and perplexity of an `lm`-head model over the texts of a file."""
    from ..data.readers import read_texts

    model.eval()
    metrics = LanguageModelMetrics()
    for texts in chunks(read_texts(data, text_column=text_column), batch_size):
        batch = tokenizer(texts, max_length=max_length, padding=True, truncation=True)
        batch = {k: v.to(model.device) for k, v in batch.items()}
        logits = model(**model_inputs(model, batch)).float()  # (B, T, V)
        target = batch["input_ids"][:, 1:].masked_fill(batch["attention_mask"][:, 1:] == 0, IGNORE_INDEX)
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), target.flatten(), ignore_index=IGNORE_INDEX,
                               reduction="sum")
        metrics.update(loss, int((target != IGNORE_INDEX).sum()))
    if metrics.tokens == 0:
        raise DataError(f"{data}: no tokens to evaluate (the file is empty or every text is one token)")
    return metrics.compute()


def evaluate_model(model_dir: str | os.PathLike, data: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                   *, batch_size: int = 32, max_length: int | None = None, skip_bad: bool = False,
                   worst_k: int = 20, columns: dict | None = None) -> dict:
    """Load a fine-tuned model folder, evaluate it on `data`, and write a report into `out_dir` (if given).

    `columns` overrides the column names saved with the model (text_column, text_pair_column, label_column).
    """
    from .report import write_report

    data = Path(data)
    if not data.exists():
        raise DataError(f"{data}: no such file or folder")
    model, tokenizer, meta = _load(model_dir)
    meta.update({k: v for k, v in (columns or {}).items() if v is not None})
    if max_length:
        meta["max_length"] = max_length
    if meta["task"] == "language_model":
        metrics = evaluate_language_model(model, tokenizer, data, meta["max_length"], batch_size, meta["text_column"])
    else:
        metrics = evaluate_records(model, tokenizer, meta, labelled_records(meta, data, skip_bad), batch_size, worst_k)
    metrics = {"model": str(model_dir), "data": str(data), **metrics}
    if out_dir is not None:
        write_report(metrics, out_dir, title=f"Evaluation of {Path(model_dir).name} on {data.name}")
    return metrics


def _load(model_dir):
    """A fine-tuned folder -> (model, tokenizer, meta); a language model gets task 'language_model'."""
    from .. import load, load_tokenizer
    from ..finetune.artifacts import finetuned_meta

    model, tokenizer = load(model_dir), load_tokenizer(model_dir)
    if model.config.head == "lm":
        limit = min(tokenizer.model_max_length or 1024, model.config.max_positions)
        return model, tokenizer, {"task": "language_model", "text_column": "text", "max_length": limit}
    return model, tokenizer, finetuned_meta(model, tokenizer, model_dir)
