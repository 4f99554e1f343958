"""Tabular CSV / TSV files (optionally .gz) into records `{"fields", "source"}` plus `"label"`, lazily.

`fields` holds every column but the label, as text: the task's `TabularProcessor` (data/processors.py)
picks the feature columns and turns them into numbers, naming the file, line and column of a bad value.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import DataError
from .formats import Problem, read_csv, strip_suffixes
from .labels import LabelMap

DELIMITERS = {".csv": ",", ".tsv": "\t"}


def read_table(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    label_column: str = "label",
    labels: LabelMap | None = None,
    with_labels: bool = True,
    skip_bad: bool = False,
) -> Iterator[dict]:
    many = isinstance(paths, (list, tuple))
    for path in (Path(p) for p in (paths if many else [paths])):
        files = (
            sorted(p for p in path.rglob("*") if p.is_file() and strip_suffixes(p) in DELIMITERS)
            if path.is_dir()
            else [path]
        )
        if not files:
            raise DataError(f"{path}: no .csv or .tsv files in the folder")
        for file in files:
            if strip_suffixes(file) not in DELIMITERS:
                raise DataError(f"{file}: tabular data is read from .csv or .tsv files (optionally .gz)")
            yield from _rows(file, label_column, labels, with_labels, skip_bad)


def _rows(file: Path, label_column: str, labels: LabelMap | None, with_labels: bool, skip_bad: bool):
    for row in read_csv(file, [label_column] if with_labels else [], DELIMITERS[strip_suffixes(file)]):
        if isinstance(row, Problem):
            if skip_bad:
                continue
            raise DataError(f"{row.where}: {row.message}; fix it, or skip bad rows with --skip-bad")
        fields = {k: v for k, v in row.fields.items() if k != label_column}
        record = {"fields": fields, "source": row.where}
        if with_labels:
            label = row.fields[label_column].strip()
            if labels is not None:
                if label not in labels:
                    if skip_bad:
                        continue
                    raise DataError(f"{row.where}: unknown label {label!r}; the model knows {labels.names}")
                label = labels.encode(label)
            record["label"] = label
        yield record
