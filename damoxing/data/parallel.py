"""Parallel text (translation, any text-to-text data) read lazily into `{"source", "target"}` records.

Two layouts, as fairseq, OpenNMT and `datasets` users have them:

    one file with two columns     .jsonl / .csv / .tsv / .parquet (optionally .gz): source_column, target_column
    two line-aligned text files   [train.en, train.fr]: line i of the first translates to line i of the second;
                                  any file that is not a table is read this way, the list taken two at a time

Every bad record names its file and line: a missing column, an empty side, a missing translation (one
text file longer than the other). With `skip_bad` records with a missing or empty side are skipped
instead, and counted; files of different lengths are always an error, since the lines no longer pair up.
With `with_target=False` (prediction) only the source side is read.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import DataError
from .formats import Problem, Row, iter_lines, read_csv, read_jsonl, read_parquet, strip_suffixes
from .readers import JSONL_SUFFIXES, PARQUET_SUFFIXES, SKIP_HINT, TABLE_SUFFIXES, bad_text

TABLES = JSONL_SUFFIXES | TABLE_SUFFIXES | PARQUET_SUFFIXES


def is_table(path: Path) -> bool:
    return strip_suffixes(path) in TABLES


def read_parallel(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    source_column: str = "source",
    target_column: str = "target",
    *,
    skip_bad: bool = False,
    with_target: bool = True,
    skipped: Counter | None = None,
) -> Iterator[dict]:
    """`{"source", "target"}` records (only "source" without targets) from tables or pairs of text files."""
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
    for path in paths:
        if not path.is_file():
            raise DataError(
                f"{path}: no such file" + (" (give files, not folders, for parallel text)" if path.is_dir() else "")
            )
    skipped = skipped if skipped is not None else Counter()
    tables, texts = [p for p in paths if is_table(p)], [p for p in paths if not is_table(p)]
    for path in tables:
        rows = _table_rows(path, source_column, target_column if with_target else None)
        yield from _records(rows, source_column, target_column if with_target else None, skip_bad, skipped)
    if texts and with_target:
        if len(texts) % 2:
            raise DataError(
                f"{texts[-1]}: line-aligned text files come in pairs (source file, target file); "
                f"got {len(texts)} text files: {', '.join(map(str, texts))}"
            )
        for source, target in zip(texts[::2], texts[1::2]):
            yield from _records(
                _aligned_rows(source, target),
                "source",
                "target",
                skip_bad,
                skipped,
                {"source": source, "target": target},
            )
    elif texts:  # prediction: every text file is sources, one per non-blank line
        for path in texts:
            rows = (Row(f"{path}:{n}", {"source": line}, n) for n, line in iter_lines(path) if line.strip())
            yield from _records(rows, "source", None, skip_bad, skipped)


def _table_rows(path: Path, source: str, target: str | None) -> Iterator[Row | Problem]:
    suffix = strip_suffixes(path)
    columns = [c for c in (source, target) if c]
    if suffix in JSONL_SUFFIXES:
        return read_jsonl(path)
    if suffix in TABLE_SUFFIXES:
        return read_csv(path, columns, "\t" if suffix == ".tsv" else ",")
    return read_parquet(path, columns)


def _aligned_rows(source: Path, target: Path) -> Iterator[Row]:
    """Rows of two line-aligned files; `where` names the source line (both files share line numbers)."""
    for (n, src), (m, tgt) in itertools.zip_longest(iter_lines(source), iter_lines(target), fillvalue=(None, None)):
        if n is None or m is None:
            longer, shorter, line = (target, source, m) if n is None else (source, target, n)
            raise DataError(
                f"{longer}:{line}: no matching line in {shorter}, which ends at line {line - 1}: "
                f"the files of a parallel corpus must have the same number of lines"
            )
        yield Row(f"{source}:{n}", {"source": src, "target": tgt}, n)


def _records(
    rows, source: str, target: str | None, skip_bad: bool, skipped: Counter, files: dict[str, Path] | None = None
) -> Iterator[dict]:
    """Checked records; `files` (aligned text files): a problem on a side names that side's file and line."""
    for row in rows:
        result = row if isinstance(row, Problem) else _record(row, source, target, files)
        if isinstance(result, Problem):
            if not skip_bad:
                raise DataError(f"{result.where}: {result.message}; {SKIP_HINT}")
            skipped[result.reason] += 1
            continue
        yield result


def _record(row: Row, source: str, target: str | None, files: dict[str, Path] | None) -> dict | Problem:
    record = {}
    for key, column in (("source", source), ("target", target)):
        if column is None:
            continue
        if files is not None:
            row = Row(f"{files[key]}:{row.first_line}", row.fields, row.first_line)
        if column not in row.fields:
            return Problem(row.where, "missing_column", f"no field {column!r}; fields are {sorted(row.fields)}")
        value = row.fields[column]
        if not isinstance(value, str):
            what = "empty (null)" if value is None else f"{type(value).__name__}, not text"
            return Problem(row.where, "bad_value", f"the {key} ({column!r}) is {what}")
        if not value.strip():
            return Problem(row.where, "empty_side", f"the {key} ({column!r}) is empty")
        bad = bad_text(value, row, column)
        if bad:
            return bad
        record[key] = value.strip()
    return record
