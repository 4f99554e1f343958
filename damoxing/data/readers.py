"""Read user files into records, lazily: `{"text"}`, `{"text", "label"}` or `{"text_a", "text_b", "label"}`.

`read_records(path, ...)` dispatches on the file suffix (each optionally `.gz`):

    .txt             plain text: documents separated by blank lines (text_mode="paragraph"),
                     one per line ("line") or one per file ("file")
    .jsonl .ndjson   one JSON object per line (also .json, as in HF datasets)
    .csv .tsv        columns chosen by name or by position (an int, from 0); `header` ("auto", "true",
                     "false") says whether the first row names the columns (see formats.read_csv)
    .parquet         columns chosen by name or position, read one row-group batch at a time
    a folder         class sub-folders of text files (folder name = label), or else every data file inside

Bad input never crashes with a traceback and is never dropped silently: each bad record raises
`DataError` naming the file and line, or with `skip_bad=True` is skipped and counted in `.summary`.

Prediction needs one record per input row, in order: `keep_blank=True` turns blank rows (a blank line of
plain text read line by line, a CSV row whose fields are all blank) into records with empty text, and
`error_records=True` turns each bad record (with `skip_bad`) into `{"error": reason, "where", "message"}`.
`keep_columns` (a list, maybe empty) carries those columns, and an `id` column when there is one, into each
record as `{"kept": {name: value}}`, for prediction output.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from .formats import (
    Problem,
    Row,
    field_key,
    is_class_folder,
    read_class_folder,
    read_csv,
    read_jsonl,
    read_parquet,
    read_text,
    strip_suffixes,
)
from .labels import LabelMap

TEXT_SUFFIXES = {".txt", ".text"}
JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}
TABLE_SUFFIXES = {".csv", ".tsv"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
KNOWN_SUFFIXES = TEXT_SUFFIXES | JSONL_SUFFIXES | TABLE_SUFFIXES | PARQUET_SUFFIXES
SKIP_HINT = (
    "fix it, or skip and count bad records: --skip-bad on the command line, data.skip_bad: true in a "
    "config, skip_bad=True in Python"
)


@dataclass
class ReadSummary:
    """What a pass over the data read and skipped; `skipped` counts records by reason."""

    files: int = 0
    records: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def skip(self, problem: Problem) -> None:
        self.skipped[problem.reason] += 1
        if len(self.examples) < 5:
            self.examples.append(f"{problem.where}: {problem.message}")

    def add(self, other: ReadSummary) -> None:
        """Add the counts of another pass (one summary over several readers)."""
        self.files += other.files
        self.records += other.records
        self.skipped.update(other.skipped)
        self.examples.extend(other.examples[: max(0, 5 - len(self.examples))])

    def as_dict(self) -> dict:
        return {
            "files": self.files,
            "records": self.records,
            "skipped": dict(sorted(self.skipped.items())),
            "skipped_total": sum(self.skipped.values()),
            "skipped_examples": list(self.examples),
        }


_SURROGATE = re.compile("[\ud800-\udfff]")  # never text: no encoder writes it, the tokenizer refuses it


def bad_text(value: str, row: Row, name: str) -> Problem | None:
    """A lone surrogate in a value: a byte that was not UTF-8 (surrogateescape maps bytes 0x80-0xff to
    U+DC80-U+DCFF), or a JSON escape such as "\\ud800" that is half of a pair. Report its line."""
    found = _SURROGATE.search(value)
    if found is None:
        return None
    path, _, _ = row.where.rpartition(":")
    line = row.first_line + value.count("\n", 0, found.start())
    where = f"{path}:{line}" if path else row.where
    code = ord(found.group())
    if 0xDC80 <= code <= 0xDCFF:
        return Problem(
            where, "bad_utf8", f"byte 0x{code - 0xDC00:02x} in {name!r} is not UTF-8 (re-encode the file as UTF-8)"
        )
    return Problem(
        where,
        "lone_surrogate",
        f"{name!r} holds a lone surrogate \\u{code:04x}, half of a UTF-16 pair "
        "and no character (fix the escape, or remove it)",
    )


class RecordReader:
    """A re-iterable, lazy reader; each pass resets and fills `summary`."""

    def __init__(
        self,
        paths: str | os.PathLike | Sequence[str | os.PathLike],
        *,
        text_column: str | int = "text",
        label_column: str | int | None = None,
        text_pair_column: str | int | None = None,
        labels: LabelMap | Sequence[str] | None = None,
        skip_bad: bool = False,
        text_mode: str | None = None,
        keep_blank: bool = False,
        error_records: bool = False,
        header: str = "auto",
        keep_columns: Sequence[str | int] | None = None,
    ):
        many = isinstance(paths, (list, tuple))
        self.paths = [Path(p) for p in (paths if many else [paths])]
        self.text_column = text_column
        self.label_column = None if label_column == "" else label_column  # None: no such column
        self.text_pair_column = None if text_pair_column == "" else text_pair_column
        self.labels = labels if labels is None or isinstance(labels, LabelMap) else LabelMap(labels)
        self.skip_bad = skip_bad
        self.text_mode = text_mode
        self.keep_blank = keep_blank
        self.error_records = error_records
        self.header = header
        self.keep_columns = list(keep_columns) if keep_columns is not None else None
        self.summary = ReadSummary()
        for path in self.paths:
            if not path.exists():
                raise DataError(f"{path}: no such file or folder")

    def __iter__(self) -> Iterator[dict]:
        self.summary = ReadSummary()
        for path in self.paths:
            yield from self._read_path(path)

    def _read_path(self, path: Path) -> Iterator[dict]:
        if path.is_dir() and is_class_folder(path):
            self.summary.files += 1
            yield from self._records(read_class_folder(path, self.text_mode or "file"), builtin=True)
            return
        files = (
            sorted(p for p in path.rglob("*") if p.is_file() and strip_suffixes(p) in KNOWN_SUFFIXES)
            if path.is_dir()
            else [path]
        )
        if path.is_dir() and not files:
            raise DataError(
                f"{path}: the folder has no data files ({', '.join(sorted(KNOWN_SUFFIXES))}, optionally .gz)"
            )
        for file in files:
            self.summary.files += 1
            before = self.summary.records + sum(self.summary.skipped.values())
            yield from self._records(self._rows(file), builtin=strip_suffixes(file) in TEXT_SUFFIXES)
            if self.summary.records + sum(self.summary.skipped.values()) == before:
                self._problem(Problem(str(file), "empty_file", "the file is empty (no records)"))

    def _rows(self, file: Path) -> Iterator[Row | Problem]:
        suffix = strip_suffixes(file)
        columns = [c for c in (self.text_column, self.text_pair_column, self.label_column) if c is not None]
        if suffix in TEXT_SUFFIXES:
            if self.label_column is not None or self.text_pair_column is not None:
                raise DataError(
                    f"{file}: plain text has no columns; use JSONL, CSV, Parquet or a folder of "
                    "class sub-folders for labelled data"
                )
            return read_text(file, self.text_mode or "paragraph", keep_blank=self.keep_blank)
        if suffix in JSONL_SUFFIXES:
            return read_jsonl(file)
        if suffix in TABLE_SUFFIXES:
            delimiter = "\t" if suffix == ".tsv" else ","
            also = self.keep_columns or ()
            return read_csv(file, columns, delimiter, keep_blank=self.keep_blank, header=self.header, also=also)
        if suffix in PARQUET_SUFFIXES:
            if self.keep_columns is None:
                return read_parquet(file, columns)
            return read_parquet(file, [*columns, *self.keep_columns], optional=["id"])
        raise DataError(
            f"{file}: unknown file type {suffix or '(no suffix)'!r}; "
            f"supported: {', '.join(sorted(KNOWN_SUFFIXES))}, each optionally .gz, or a folder"
        )

    def _records(self, rows: Iterator[Row | Problem], builtin: bool) -> Iterator[dict]:
        """`builtin`: rows from plain text or class folders, whose fields are always `text` (and `label`)."""
        for row in rows:
            result = row if isinstance(row, Problem) else self._record(row, builtin)
            if isinstance(result, Problem) and self.error_records and self.skip_bad:
                result = {"error": result.reason, "where": result.where, "message": result.message}
            elif isinstance(result, Problem):
                self._problem(result)
                continue
            self.summary.records += 1
            yield result

    def _problem(self, problem: Problem) -> None:
        if not self.skip_bad:
            raise DataError(f"{problem.where}: {problem.message}; {SKIP_HINT}")
        self.summary.skip(problem)

    def _record(self, row: Row, builtin: bool) -> dict | Problem:
        pair = self.text_pair_column is not None and not builtin
        names = {"text_a" if pair else "text": "text" if builtin else self.text_column}
        if pair:
            names["text_b"] = self.text_pair_column
        label_column = ("label" if "label" in row.fields else None) if builtin else self.label_column
        if label_column is not None:
            names["label"] = label_column
        record = {}
        for key, column in names.items():
            if field_key(row, column) not in row.fields:
                return self._missing(row, column)
            value = row.fields[field_key(row, column)]
            if value is None:
                return Problem(row.where, "missing_value", f"field {column!r} is empty (null)")
            if key == "label":
                if not isinstance(value, (str, int)) or isinstance(value, bool):
                    return Problem(row.where, "bad_value", f"label {value!r} is not a string or integer")
                value = str(value).strip()
            elif not isinstance(value, str):
                return Problem(row.where, "bad_value", f"field {column!r} is {type(value).__name__}, not text")
            bad = bad_text(value, row, column)
            if bad:
                return bad
            record[key] = value
        if label_column is not None and self.labels is not None:
            if record["label"] not in self.labels:
                return Problem(
                    row.where,
                    "unknown_label",
                    f"unknown label {record['label']!r}; known labels are {self.labels.names}",
                )
            record["label"] = self.labels.encode(record["label"])
        if self.keep_columns is not None:
            kept = self._kept(row)
            if isinstance(kept, Problem):
                return kept
            record["kept"] = kept
        return record

    def _kept(self, row: Row) -> dict | Problem:
        """The values of the kept columns, by name (a position in a file without a header: its number), and the
        `id` column's when there is one."""
        kept = {}
        wanted = (["id"] if "id" in row.fields and "id" not in self.keep_columns else []) + self.keep_columns
        for column in wanted:
            key = field_key(row, column)
            if key not in row.fields:
                return self._missing(row, column)
            kept[str(key)] = row.fields[key]
        return kept

    @staticmethod
    def _missing(row: Row, column: str | int) -> Problem:
        fields = sorted(map(str, row.fields))
        if isinstance(column, int):  # a table's positions are checked up front: these fields have names
            return Problem(
                row.where,
                "missing_column",
                f"no column at position {column}: choose fields by name here (positions are for CSV, TSV and "
                f"Parquet); fields are {fields}",
            )
        return Problem(row.where, "missing_column", f"no field {column!r}; fields are {fields}")


def read_records(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    text_column: str | int = "text",
    label_column: str | int | None = None,
    text_pair_column: str | int | None = None,
    labels: LabelMap | Sequence[str] | None = None,
    skip_bad: bool = False,
    text_mode: str | None = None,
    keep_blank: bool = False,
    error_records: bool = False,
    header: str = "auto",
    keep_columns: Sequence[str | int] | None = None,
) -> RecordReader:
    """A lazy, re-iterable reader over one or more files or folders; see the module docstring.

    With `labels` (a LabelMap or a list of names) each record's label becomes its integer id and an
    unknown label is a bad record; without it labels stay strings (build a map with `load_labelled`).
    """
    return RecordReader(
        paths,
        text_column=text_column,
        label_column=label_column,
        text_pair_column=text_pair_column,
        labels=labels,
        skip_bad=skip_bad,
        text_mode=text_mode,
        keep_blank=keep_blank,
        error_records=error_records,
        header=header,
        keep_columns=keep_columns,
    )


def read_texts(paths: str | os.PathLike | Sequence[str | os.PathLike], **kwargs) -> Iterator[str]:
    """Just the document texts, lazily (for pretraining corpora)."""
    for record in read_records(paths, **kwargs):
        yield record["text"]


def load_labelled(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    label_column: str = "label",
    labels: LabelMap | Sequence[str] | None = None,
    **kwargs,
) -> tuple[list[dict], LabelMap, ReadSummary]:
    """Read a labelled set into memory with integer labels; the map is `labels` or the sorted labels seen.

    With `labels` given, a label outside it is a bad record (an error naming its line, or skipped and counted).
    """
    reader = read_records(paths, label_column=label_column, labels=labels, **kwargs)
    records = list(reader)
    if reader.labels is not None:
        return records, reader.labels, reader.summary
    label_map = LabelMap.from_labels(r["label"] for r in records)
    return [{**r, "label": label_map.encode(r["label"])} for r in records], label_map, reader.summary
