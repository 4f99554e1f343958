"""Labelled records for each fine-tuning task, read with the data readers; bad input names file and line.

    sequence    {"text", "label": id} or {"text_a", "text_b", "label": id}; labels mapped by a LabelMap
    regression  {"text"(, "text_a", "text_b"), "label": float}
    token       {"tokens": [word, ...], "labels": [tag id, ...]} from JSONL lines {"tokens": [...], "tags": [...]}
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..data.formats import Problem, read_jsonl, strip_suffixes
from ..data.labels import LabelMap
from ..data.readers import SKIP_HINT, read_records
from ..errors import DataError


def _paths(paths) -> list[Path]:
    return [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]


def iter_sequence_records(paths, *, text_column="text", text_pair_column="", label_column: str | None = "label",
                          labels: LabelMap | None = None, skip_bad=False) -> Iterator[dict]:
    """Lazily: records with label ids (when `labels` is given), raw label strings, or no label."""
    return iter(read_records(_paths(paths), text_column=text_column, label_column=label_column or None,
                             text_pair_column=text_pair_column or None, labels=labels, skip_bad=skip_bad))


def load_sequence(paths, *, labels: LabelMap | None = None, **kwargs) -> tuple[list[dict], LabelMap]:
    """Records with integer labels; the map is `labels` (unknown labels are errors) or the sorted labels seen."""
    records = list(iter_sequence_records(paths, labels=labels, **kwargs))
    if labels is not None:
        return records, labels
    label_map = LabelMap.from_labels(r["label"] for r in records)
    return [{**r, "label": label_map.encode(r["label"])} for r in records], label_map


def iter_regression_records(paths, *, label_column="label", **kwargs) -> Iterator[dict]:
    """Records whose label is a finite number; anything else is an error naming the record."""
    for number, record in enumerate(iter_sequence_records(paths, label_column=label_column, **kwargs), start=1):
        try:
            value = float(record["label"])
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise DataError(f"{', '.join(map(str, _paths(paths)))}: record {number}: label {record['label']!r} "
                            "is not a number (regression needs numeric scores)")
        yield {**record, "label": value}


def iter_token_records(paths, *, tokens_column="tokens", tags_column="tags", labels: LabelMap | None = None,
                       with_tags: bool = True, skip_bad: bool = False) -> Iterator[dict]:
    """JSONL lines `{"tokens": [...], "tags": [...]}` -> {"tokens", "tags"} (tag names) or {"tokens", "labels"}."""
    for path in _paths(paths):
        if not path.exists():
            raise DataError(f"{path}: no such file")
        if strip_suffixes(path) not in (".jsonl", ".ndjson"):
            raise DataError(f"{path}: token classification reads JSON Lines ({{\"{tokens_column}\": [words], "
                            f"\"{tags_column}\": [tags]}} per line), not {strip_suffixes(path) or 'this file'}")
        empty = True
        for row in read_jsonl(path):
            problem = row if isinstance(row, Problem) else _token_problem(row, tokens_column, tags_column, with_tags)
            if problem is None and with_tags and labels is not None:
                unknown = [t for t in row.fields[tags_column] if str(t) not in labels]
                if unknown:
                    problem = Problem(row.where, "unknown_label",
                                      f"unknown tag {unknown[0]!r}; known tags are {labels.names}")
            if problem is not None:
                if skip_bad:
                    continue
                raise DataError(f"{problem.where}: {problem.message}; {SKIP_HINT}")
            empty = False
            record = {"tokens": [str(t) for t in row.fields[tokens_column]]}
            if with_tags:
                tags = [str(t) for t in row.fields[tags_column]]
                record.update({"labels": [labels.encode(t) for t in tags]} if labels is not None else {"tags": tags})
            yield record
        if empty:
            raise DataError(f"{path}: the file is empty (no records)")


def _token_problem(row, tokens_column: str, tags_column: str, with_tags: bool) -> Problem | None:
    tokens = row.fields.get(tokens_column)
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
        return Problem(row.where, "bad_value", f"field {tokens_column!r} must be a non-empty list of words")
    if with_tags:
        tags = row.fields.get(tags_column)
        if not isinstance(tags, list) or len(tags) != len(tokens):
            return Problem(row.where, "bad_value",
                           f"field {tags_column!r} must be a list with one tag per word ({len(tokens)} words)")
    return None


def load_token(paths, *, labels: LabelMap | None = None, **kwargs) -> tuple[list[dict], LabelMap]:
    records = list(iter_token_records(paths, labels=labels, **kwargs))
    if labels is not None:
        return records, labels
    label_map = LabelMap.from_labels(t for r in records for t in r["tags"])
    return [{"tokens": r["tokens"], "labels": [label_map.encode(t) for t in r["tags"]]} for r in records], label_map


def load_task_records(task: str, paths: Sequence, *, data, labels: LabelMap | None = None) -> tuple[list[dict], LabelMap | None]:
    """All records of `paths` for `task`, with `data` a FinetuneDataConfig (column names, skip_bad)."""
    if task == "token":
        return load_token(paths, labels=labels, tokens_column=data.tokens_column, tags_column=data.tags_column,
                          skip_bad=data.skip_bad)
    common = dict(text_column=data.text_column, text_pair_column=data.text_pair_column, skip_bad=data.skip_bad)
    if task == "regression":
        return list(iter_regression_records(paths, label_column=data.label_column, **common)), None
    return load_sequence(paths, labels=labels, label_column=data.label_column, **common)
