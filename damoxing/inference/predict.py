"""Predictions from a fine-tuned model, a batch at a time, through its task: labels with probabilities.

    for row in predict_records(model, tokenizer, task, records, names, max_length):
        print(row["label"], row["probability"])

Each row is a dict: classification {"text", "label", "probability", "probabilities": {name: p}},
regression {"text", "score"}, token classification {"tokens", "labels", "probabilities"}, translation
{"source", "translation"}. Records are
read lazily and `write_jsonl` writes each line as soon as its batch is done: any file runs in flat memory.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import IO

import torch

from ..evaluation.evaluate import on_cpu
from ..tasks import SupervisedTask, chunks


@torch.no_grad()
def predict_records(model, tokenizer, task: SupervisedTask, records: Iterable[dict], names: list[str],
                    max_length: int | None, batch_size: int = 32) -> Iterator[dict]:
    """One prediction dict per record, in order, computed a batch at a time."""
    model.eval()
    for part in chunks(records, batch_size):
        batch = task.encode(tokenizer, part, max_length)
        batch.pop("labels", None)
        batch = {k: v.to(model.device) for k, v in batch.items()}
        yield from task.rows(tokenizer, part, on_cpu(task.outputs(model, batch)), list(names), max_length)


def write_jsonl(rows: Iterable[dict], out: IO[str]) -> int:
    """Write each row as one JSON line as soon as it arrives; returns the number of lines."""
    n = 0
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        n += 1
        if n % 256 == 0:
            out.flush()
    out.flush()
    return n


def format_row(row: dict) -> str:
    """One human-readable line for a command-line text."""
    if "source" in row:  # text to text
        return row["translation"]
    if "score" in row:
        return f"{row['score']:.4f}\t{row.get('text', '')}"
    if "tokens" in row:
        return " ".join(f"{t}/{label}" for t, label in zip(row["tokens"], row["labels"]))
    return f"{row['label']}\t{row['probability']:.4f}\t{row.get('text', row.get('text_a', ''))}"
