"""Low-level file parsers: each yields raw rows lazily, one `Row` (or `Problem`) at a time.

Bytes are decoded as UTF-8 with `surrogateescape`, so a bad byte never stops the parser: it survives
as a lone surrogate and the record check in `readers.py` reports it with its file and line.
A UTF-8 byte-order mark at the start of a file (Excel and Notepad write one) is dropped before parsing.
Files ending in `.gz` are decompressed on the fly.
"""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..errors import DataError

TEXT_MODES = ("paragraph", "line", "file")
HEADER_CHOICES = ("auto", "true", "false")  # data.header: is a CSV's first row a header?
BOM = "\ufeff"


@dataclass
class Row:
    """Raw fields of one record and where it starts (`file:line`, or `file:row N` for Parquet); the fields of a
    table without a header are keyed by position (0, 1, ...)."""

    where: str
    fields: dict
    first_line: int = 1
    header: list[str] | None = None  # a table's column names (a column chosen by position is looked up here)


@dataclass
class Problem:
    """A record that cannot be used: `reason` is a short key counted in the summary."""

    where: str
    reason: str
    message: str


def strip_suffixes(path: Path) -> str:
    """The format suffix of a path, ignoring a trailing `.gz`: `a.csv.gz` -> `.csv`."""
    suffixes = path.suffixes
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1].lower() if suffixes else ""


def open_binary(path: Path) -> IO[bytes]:
    """The file's bytes (decompressed for `.gz`); a file that cannot be opened is a DataError naming it."""
    try:
        return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")
    except OSError as e:  # PermissionError above all; a missing file is caught earlier, by the reader
        raise DataError(
            f"{path}: cannot read the file ({e.strerror}); check that you may read it "
            "(ls -l, chmod a+r), or pass another file"
        ) from None


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text without the newline), decoded with surrogateescape, without a byte-order mark;
    memory stays one line."""
    try:
        with open_binary(path) as f:
            for number, raw in enumerate(f, start=1):
                line = raw.decode("utf-8", "surrogateescape").rstrip("\r\n")
                yield number, line.removeprefix(BOM) if number == 1 else line
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataError(f"{path}: not a readable gzip file ({e}); re-compress it or remove the .gz suffix") from None
    except OSError as e:  # an I/O error part-way through (a failing disk, a network drive that went away)
        raise DataError(
            f"{path}: reading failed ({e.strerror or e}); check the disk, or copy the file elsewhere"
        ) from None


def read_text(path: Path, mode: str, keep_blank: bool = False) -> Iterator[Row]:
    """Plain text. `paragraph`: documents separated by blank lines; `line`: one per line; `file`: one per file.

    In `line` mode a blank line is passed over, or with `keep_blank` is a row with empty text (every line a row).
    """
    if mode not in TEXT_MODES:
        raise DataError(f"unknown text mode {mode!r}; choose one of {TEXT_MODES}")
    if mode == "file":
        lines = [line for _, line in iter_lines(path)]
        text = "\n".join(lines).strip()
        if text:
            yield Row(f"{path}:1", {"text": text})
        return
    block: list[str] = []
    start = 0
    for number, line in iter_lines(path):
        if mode == "line":
            if line.strip() or keep_blank:
                yield Row(f"{path}:{number}", {"text": line.strip()}, number)
            continue
        if line.strip():
            if not block:
                start = number
            block.append(line.rstrip())
        elif block:
            yield Row(f"{path}:{start}", {"text": "\n".join(block).strip()}, start)
            block = []
    if block:
        yield Row(f"{path}:{start}", {"text": "\n".join(block).strip()}, start)


def read_jsonl(path: Path) -> Iterator[Row | Problem]:
    """JSON Lines: one JSON object per line; blank lines are ignored. A JSON array file stops with a message."""
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        if number == 1 and line.lstrip().startswith("["):
            raise DataError(f"{where}: the file holds a JSON array; write one JSON object per line (JSON Lines)")
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            yield Problem(where, "malformed_json", f"malformed JSON ({e.msg} at column {e.colno})")
            continue
        if not isinstance(obj, dict):
            yield Problem(where, "malformed_json", f"expected a JSON object, got {type(obj).__name__}")
            continue
        yield Row(where, obj, number)


def read_csv(
    path: Path,
    columns: list[str | int],
    delimiter: str,
    keep_blank: bool = False,
    header: str = "true",
    also: Sequence[str | int] = (),
) -> Iterator[Row | Problem]:
    """CSV or TSV; quoted fields may span lines. A column is chosen by name (str) or by position (int, from 0).

    `header` says what the first row is. "true": the column names; "false": data, and the fields are keyed by
    position (0, 1, ...); "auto": the names if it holds every column name in `columns`, else data when every
    column is chosen by position, else the read stops with a message that shows the row. A column that is not
    there stops the read; so does one of `also` (columns carried along, which do not decide "auto"). Empty lines
    are not rows; a row of blank fields is passed over too, or with `keep_blank` is a row.
    """
    csv.field_size_limit(1 << 30)  # articles are longer than csv's 128 KiB default field limit
    lines = (line + "\n" for _, line in iter_lines(path))
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        first = next(reader, None)
    except csv.Error as e:
        raise DataError(f"{path}:1: cannot parse the first row ({e})") from None
    if first is None:
        return
    names = [h.strip() for h in first] if first_row_is_header(path, first, columns, header) else None
    width = len(names) if names is not None else len(first)
    check_columns(path, [*columns, *also], names, width)
    rows = _csv_rows(reader)
    if names is None:  # the first row is data
        rows = itertools.chain([(1, first)], rows)
    keys = names if names is not None else list(range(width))
    for start, values in rows:
        where = f"{path}:{start}"
        if isinstance(values, csv.Error):
            yield Problem(where, "malformed_row", f"cannot parse the row ({values})")
            continue
        if not any(v.strip() for v in values) and not (keep_blank and len(values) == width):
            continue  # an empty line; a row of blank fields too, unless every row counts
        if len(values) != width:
            yield Problem(
                where,
                "missing_column" if len(values) < width else "malformed_row",
                f"the row has {len(values)} fields but the {'header' if names else 'first row'} has {width}",
            )
            continue
        yield Row(where, dict(zip(keys, values)), start, names)


def _csv_rows(reader) -> Iterator[tuple[int, list[str] | csv.Error]]:
    """(first line, fields) of each row after the first, or (first line, the error) of a row csv cannot parse."""
    while True:
        start = reader.line_num + 1
        try:
            yield start, next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield start, e


def first_row_is_header(path: Path, first: list[str], columns: list[str | int], header: str) -> bool:
    """Whether a table's first row names its columns (see `read_csv`); "auto" with neither answer stops."""
    if header not in HEADER_CHOICES:
        raise DataError(f"header: {header!r} is not allowed; choose one of {', '.join(HEADER_CHOICES)}")
    if header != "auto":
        return header == "true"
    wanted = [c for c in columns if isinstance(c, str)]
    cells = {cell.strip() for cell in first}
    missing = [c for c in wanted if c not in cells]
    if not missing:
        return bool(wanted) or not columns  # no column at all: the first row is the header, as it always was
    if len(wanted) == 0:
        return False
    shown = ", ".join(repr(cell if len(cell) <= 40 else cell[:37] + "...") for cell in first)
    raise DataError(
        f"{path}:1: no column {missing[0]!r} in the first row [{shown}]. If that row is the header, choose "
        "columns among its names (text_column=, label_column=; --text-column, --label-column). If the file has "
        f"no header row, set data.header: false and choose the columns by position, from 0: {position_hint(first)} "
        "(evaluate, predict: --header false --text-column N)"
    )


def position_hint(first: list[str]) -> str:
    """An example of columns chosen by position for a file whose first row is data: the longest field is
    probably the text, and another one the label."""
    text = max(range(len(first)), key=lambda i: len(first[i]))
    if len(first) < 2:
        return f"--data.text_column={text}"
    label = 0 if text != 0 else 1
    return f"--data.header=false --data.text_column={text} --data.label_column={label}"


def check_columns(path: Path, columns: list[str | int], names: list[str] | None, width: int) -> None:
    """Every column in `columns` is in the table: a name in the header, a position below the width."""
    for column in columns:
        if isinstance(column, int):
            if not 0 <= column < width:
                raise DataError(
                    f"{path}:1: no column at position {column}; the rows have {width} columns, "
                    f"at positions 0 to {width - 1}"
                )
        elif names is None:
            raise DataError(
                f"{path}: data.header is false, so the file has no column names and {column!r} names none; "
                f"choose the column by position, from 0 (e.g. --data.text_column=1; evaluate, predict: "
                f"--text-column 1)"
            )
        elif column not in names:
            raise DataError(
                f"{path}:1: no column {column!r} in the header; columns are {names}. "
                "Choose the columns by name or by position from 0 (text_column=, label_column=; "
                "--text-column, --label-column); a file without a header row needs data.header: false "
                "(--header false)"
            )


def field_key(row: Row, column: str | int) -> str | int:
    """The key of `column` in `row.fields`: a position in a table with a header names the header's column."""
    if isinstance(column, int) and row.header is not None and 0 <= column < len(row.header):
        return row.header[column]
    return column


def read_parquet(
    path: Path, columns: list[str | int], batch_size: int = 1024, optional: Sequence[str] = ()
) -> Iterator[Row]:
    """Parquet, read one record batch at a time (only the needed columns, and those of `optional` that the
    file has), so memory stays flat."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with open_binary(path) as raw:
            pfile = pq.ParquetFile(raw)
            names = pfile.schema_arrow.names
            check_columns(path, columns, names, len(names))
            wanted = [names[c] if isinstance(c, int) else c for c in columns]
            wanted = list(dict.fromkeys(wanted + [c for c in optional if c in names]))
            row = 0
            for batch in pfile.iter_batches(batch_size=batch_size, columns=wanted):
                for fields in batch.to_pylist():
                    row += 1
                    yield Row(f"{path}:row {row}", fields, row, names)
    except (pa.ArrowException, gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataError(f"{path}: not a readable Parquet file ({e})") from None


def read_class_folder(folder: Path, mode: str) -> Iterator[Row]:
    """A folder of class sub-folders: every text file in `folder/<label>/` is a document with that label."""
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for file in sorted(p for p in class_dir.iterdir() if p.is_file() and not p.name.startswith(".")):
            empty = True
            for row in read_text(file, mode):
                empty = False
                row.fields["label"] = class_dir.name
                yield row
            if empty:
                yield Problem(f"{file}", "empty_file", "the file is empty")


def is_class_folder(folder: Path) -> bool:
    """Sub-folders holding only plain-text files (`.txt`, `.text`, no suffix; optionally `.gz`)."""
    class_dirs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    files = [f for d in class_dirs for f in d.iterdir() if not f.name.startswith(".")]
    return bool(files) and all(f.is_file() and strip_suffixes(f) in ("", ".txt", ".text") for f in files)
