"""Inference passes (final evaluation, `evaluate`, `predict`) batch text by length and put each result back.

The sorted pass must give what the plain pass gives, row for row, in the data's order, while computing less
padding. Models run in float64: the two passes differ only in how each row is padded, which changes a row's
outputs by rounding alone (masked positions add exact zeros), so 1e-12 is far below any real change.
"""

from __future__ import annotations

import dataclasses
import math
import random

import pytest

from damoxing.evaluation.evaluate import evaluate_records
from damoxing.inference.predict import predict_records
from damoxing.tasks import chunks, get_task
from damoxing.tasks.base import length_sorted_batches, token_lengths

from .conftest import make_rows
from .test_tasks import token_rows


def close(a, b) -> bool:
    """Equal, floats to 1e-12 (relative and absolute), through dicts and lists."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    return a == b


def padding_counted(task, monkeypatch) -> list[int]:
    """Padded positions of every batch task.encode makes from now on."""
    counts, encode = [], task.encode

    def counting(tokenizer, records, max_length):
        batch = encode(tokenizer, records, max_length)
        counts.append(int((batch["attention_mask"] == 0).sum()))
        return batch

    monkeypatch.setattr(task, "encode", counting)
    return counts


def long_and_short(rows: list[tuple[str, str]], seed: int) -> list[tuple[str, str]]:
    """Some texts made 4x longer, so lengths vary a lot within a plain batch."""
    rng = random.Random(seed)
    return [(" ".join([text] * 4) if rng.random() < 0.3 else text, label) for text, label in rows]


@pytest.mark.parametrize("window", [1024, 40])  # one window, or several (40 is not a multiple of the batch)
def test_classification_sorted_by_length_equals_the_plain_pass_in_order(make_encoder, tokenizer, window, monkeypatch):
    import damoxing.evaluation.evaluate as evaluate_module
    import damoxing.inference.predict as predict_module

    monkeypatch.setattr(evaluate_module, "SORT_WINDOW", window)
    monkeypatch.setattr(predict_module, "SORT_WINDOW", window)
    task = get_task("classification")
    rows = long_and_short(make_rows(150, seed=3), seed=4)
    records, labels = task.label_map([{"text": text, "label": label} for text, label in rows])
    model = make_encoder()
    model.reset_head(len(labels), "sequence")
    model.config = dataclasses.replace(model.config, pooling="mean")  # padding must not change the mean
    model = model.double().eval()
    plain_batches = list(chunks(range(len(records)), 8))
    lengths = token_lengths(task, tokenizer, records, 64)
    assert length_sorted_batches(range(len(records)), lengths, 8) != plain_batches  # sorting changes the batches

    padding = padding_counted(task, monkeypatch)
    plain = evaluate_records(model, tokenizer, task, records, labels.names, 64, batch_size=8, by_length=False)
    plain_padding, padding[:] = sum(padding), []
    ordered = evaluate_records(model, tokenizer, task, records, labels.names, 64, batch_size=8)
    assert sum(padding) < plain_padding / 2  # the point of sorting
    assert plain["worst_examples"] and close(ordered, plain)

    inputs = [{"text": r["text"]} for r in records]
    inputs[5] = {"text": "  "}  # an empty row keeps its place too
    want = list(predict_records(model, tokenizer, task, inputs, labels.names, 64, batch_size=8, by_length=False))
    got = list(predict_records(model, tokenizer, task, inputs, labels.names, 64, batch_size=8))
    assert [r["text"] for r in got] == [r["text"] for r in inputs] and got[5]["error"] == "empty"
    assert close(got, want)


def test_token_classification_sorted_by_length_equals_the_plain_pass_in_order(make_encoder, tokenizer):
    task = get_task("token")
    records, labels = task.label_map(token_rows(90, seed=5) + [{"tokens": ["goal"] * 30, "tags": ["SPORT"] * 30}])
    records = records[-1:] + records[:-1]  # the longest first: every plain batch after it pads less
    model = make_encoder()
    model.reset_head(len(labels), "token")
    model = model.double().eval()
    plain = evaluate_records(model, tokenizer, task, records, labels.names, 64, batch_size=8, by_length=False)
    ordered = evaluate_records(model, tokenizer, task, records, labels.names, 64, batch_size=8)
    assert close(ordered, plain)

    inputs = [{"tokens": r["tokens"]} for r in records]
    want = list(predict_records(model, tokenizer, task, inputs, labels.names, 64, batch_size=8, by_length=False))
    got = list(predict_records(model, tokenizer, task, inputs, labels.names, 64, batch_size=8))
    assert [r["tokens"] for r in got] == [r["tokens"] for r in inputs] and close(got, want)
