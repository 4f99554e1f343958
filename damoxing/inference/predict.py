"""Predictions from a fine-tuned model, a batch at a time, through its task: labels with probabilities.

    for row in predict_records(model, tokenizer, task, records, names, max_length):
        print(row["label"], row["probability"])

Each row is a dict: classification {"text", "label", "probability", "probabilities": {name: p}} (images:
"image" instead of "text"), regression {"text", "score"}, token classification {"tokens", "labels",
"probabilities"}, translation {"source", "translation"}. Records are
read lazily, a window of batches at a time (text is batched by length within it, then put back in order), and
`write_jsonl` writes each line as soon as its window is done: any file runs in flat memory.

One rule everywhere: one output row per input record, in order. An empty input (blank text, no words)
gives {"text": "", "error": "empty"} and a bad record that was read with skip_bad keeps its
{"error": reason, "where", "message"}; `PredictionCounts` counts both for the summary.

Columns a record carries under "kept" (an `id` column, and those named with `--keep-columns`) open its row,
prediction or error alike; one whose name a prediction row uses itself (label, text, ...) is written as
`input_<name>`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

import torch

from ..evaluation.evaluate import on_cpu
from ..tasks import SupervisedTask, chunks
from ..tasks.base import SORT_WINDOW, length_sorted_batches, token_lengths


@torch.no_grad()
def predict_records(
    model,
    tokenizer,
    task: SupervisedTask,
    records: Iterable[dict],
    names: list[str],
    max_length: int | None,
    batch_size: int = 64,
    by_length: bool = True,
) -> Iterator[dict]:
    """One row per record, in order; empty and bad records give an `error` row. Text is read SORT_WINDOW
    records at a time and batched by length within them (`by_length`: little padding is computed); each row
    goes back to its record's place."""
    model.eval()
    by_length = by_length and task.unit == "tokens"  # images and tables have nothing to pad
    for window in chunks(records, max(batch_size, SORT_WINDOW) if by_length else batch_size):
        kept = [kept_fields(r.get("kept", {})) for r in window]
        window = [{k: v for k, v in r.items() if k != "kept"} for r in window]
        rows = {i: error_row(r) for i, r in enumerate(window) if "error" in r or is_empty(r)}
        todo = [i for i in range(len(window)) if i not in rows]
        if by_length:
            lengths = dict(zip(todo, token_lengths(task, tokenizer, [window[i] for i in todo], max_length)))
        for idx in length_sorted_batches(todo, lengths, batch_size) if by_length else chunks(todo, batch_size):
            part = [window[i] for i in idx]
            batch = task.encode(tokenizer, part, max_length)
            batch.pop("labels", None)
            batch = {k: v.to(model.device) for k, v in batch.items()}
            predicted = task.rows(tokenizer, part, on_cpu(task.outputs(model, batch)), list(names), max_length)
            rows.update(zip(idx, predicted))
        for i in range(len(window)):
            yield {**kept[i], **rows[i]}


ROW_KEYS = frozenset(
    [
        "text",
        "text_a",
        "text_b",
        "tokens",
        "source",
        "image",
        "row",
        "label",
        "labels",
        "probability",
        "probabilities",
        "score",
        "translation",
        "error",
        "where",
        "message",
    ]
)


def kept_fields(kept: dict) -> dict:
    """The kept input columns of a row, renamed `input_<name>` where a prediction row has a key of that name."""
    return {f"input_{k}" if k in ROW_KEYS else k: v for k, v in kept.items()}


def is_empty(record: dict) -> bool:
    """No text to predict: every text field blank (or an empty word list)."""
    return not any(value.strip() if isinstance(value, str) else value for value in record.values())


def error_row(record: dict) -> dict:
    """The output row of an input that has no prediction: a bad record as read, or an empty one."""
    return record if "error" in record else {**record, "error": "empty"}


@dataclass
class PredictionCounts:
    """Counts the rows that pass through `count`: how many, and how many have an `error`, by reason."""

    rows: int = 0
    errors: Counter = field(default_factory=Counter)

    def count(self, rows: Iterable[dict]) -> Iterator[dict]:
        for row in rows:
            self.rows += 1
            if "error" in row:
                self.errors[row["error"]] += 1
            yield row

    def summary(self) -> str:
        """'7 rows: 5 predictions, 2 errors (empty: 2)'."""
        failed = sum(self.errors.values())
        text = f"{plural(self.rows, 'row')}: {plural(self.rows - failed, 'prediction')}, {plural(failed, 'error')}"
        if failed:
            text += " (" + ", ".join(f"{reason}: {n}" for reason, n in sorted(self.errors.items())) + ")"
        return text


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


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def format_row(row: dict) -> str:
    """One human-readable line for a command-line text."""
    if "error" in row:
        return f"error: {row['error']}\t{row.get('text', row.get('text_a', ''))}"
    if "source" in row:  # text to text
        return row["translation"]
    if "score" in row:
        return f"{row['score']:.4f}\t{row.get('text', '')}"
    if "tokens" in row:
        return " ".join(f"{t}/{label}" for t, label in zip(row["tokens"], row["labels"]))
    shown = row.get("text", row.get("text_a", row.get("image", row.get("row", ""))))
    return f"{row['label']}\t{row['probability']:.4f}\t{shown}"
