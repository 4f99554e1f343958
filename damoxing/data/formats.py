"""Low-level file parsers: each yields raw rows lazily, one `Row` (or `Problem`) at a time.

Bytes are decoded as UTF-8 with `surrogateescape`, so a bad byte never stops the parser: it survives
as a lone surrogate and the record check in `readers.py` reports it with its file and line.
Files ending in `.gz` are decompressed on the fly.
"""

from __future__ import annotations

import csv
import gzip
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..errors import DataError

TEXT_MODES = ("paragraph", "line", "file")


@dataclass
class Row:
    """Raw fields of one record and where it starts (`file:line`, or `file:row N` for Parquet)."""

    where: str
    fields: dict
    first_line: int = 1


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
    """(line number, text without the newline), decoded with surrogateescape; memory stays one line."""
    try:
        with open_binary(path) as f:
            for number, raw in enumerate(f, start=1):
                yield number, raw.decode("utf-8", "surrogateescape").rstrip("\r\n")
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


def read_csv(path: Path, columns: list[str], delimiter: str, keep_blank: bool = False) -> Iterator[Row | Problem]:
    """CSV or TSV with a header row; quoted fields may span lines. Missing header columns stop the read.

    Empty lines are not rows; a row of blank fields is passed over too, or with `keep_blank` is a row.
    """
    csv.field_size_limit(1 << 30)  # articles are longer than csv's 128 KiB default field limit
    lines = (line + "\n" for _, line in iter_lines(path))
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        header = next(reader, None)
    except csv.Error as e:
        raise DataError(f"{path}:1: cannot parse the header ({e})") from None
    if header is None:
        return
    header = [h.strip().lstrip("\ufeff") for h in header]
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(
            f"{path}:1: no column {missing[0]!r} in the header; columns are {header}. "
            "Choose the columns by name (text_column=, label_column=; --text-column, --label-column)"
        )
    while True:
        start = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield Problem(f"{path}:{start}", "malformed_row", f"cannot parse the row ({e})")
            continue
        if not any(v.strip() for v in values) and not (keep_blank and len(values) == len(header)):
            continue  # an empty line; a row of blank fields too, unless every row counts
        where = f"{path}:{start}"
        if len(values) != len(header):
            yield Problem(
                where,
                "missing_column" if len(values) < len(header) else "malformed_row",
                f"the row has {len(values)} fields but the header has {len(header)}",
            )
            continue
        yield Row(where, dict(zip(header, values)), start)


def read_parquet(path: Path, columns: list[str], batch_size: int = 1024) -> Iterator[Row]:
    """Parquet, read one record batch at a time (only the needed columns), so memory stays flat."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with open_binary(path) as raw:
            pfile = pq.ParquetFile(raw)
            names = pfile.schema_arrow.names
            missing = [c for c in columns if c not in names]
            if missing:
                raise DataError(
                    f"{path}: no column {missing[0]!r}; columns are {names}. "
                    "Choose the columns by name (text_column=, label_column=)"
                )
            row = 0
            for batch in pfile.iter_batches(batch_size=batch_size, columns=columns):
                for fields in batch.to_pylist():
                    row += 1
                    yield Row(f"{path}:row {row}", fields, row)
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
