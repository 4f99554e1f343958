"""Corpus cleaning (`damoxing data clean IN OUT`): normalise, deduplicate, filter by length, redact PII.

Each document goes through, in order: Unicode NFKC; control and invisible format characters removed;
whitespace normalised (runs of spaces and tabs become one space, lines are stripped, runs of blank lines
become one); PII redaction; the length filter (in characters); exact-duplicate removal by hash.
The output is written atomically: an interrupted run leaves no output, or the previous one, intact.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from ..atomic import atomic_path
from ..errors import DataError
from .formats import strip_suffixes
from .pii import redact_pii
from .readers import read_records

_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{2,}")
_KEEP = {"\n", "\t"}


def normalize_text(text: str, keep_paragraphs: bool = True) -> str:
    """NFKC, control/format characters out, whitespace normalised.

    With `keep_paragraphs` a run of blank lines becomes one blank line; without, one newline (so the
    document never contains a blank line, which is the document separator of plain-text files).
    """
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(c for c in text if c in _KEEP or unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Co"))
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    text = "\n".join(lines).strip()
    return _BLANK_LINES.sub("\n\n" if keep_paragraphs else "\n", text)


def _open_output(tmp: Path, out_path: Path):
    if out_path.name.endswith(".gz"):
        return gzip.open(tmp, "wt", encoding="utf-8")
    return open(tmp, "w", encoding="utf-8")


def clean_corpus(in_path: str | os.PathLike, out_path: str | os.PathLike, *, min_length: int = 1,
                 max_length: int | None = None, redact: bool = True, dedup: bool = True, skip_bad: bool = False,
                 text_column: str = "text", label_column: str | None = None,
                 text_mode: str | None = None) -> dict:
    """Clean a corpus file or folder into `out_path` (`.txt` or `.jsonl`, optionally `.gz`) and return a summary.

    `.txt` output separates documents by a blank line (blank lines inside a document become single
    newlines so it reads back the same); `.jsonl` output has `{"text"}` (plus `"label"` if one was read).
    Redactions are counted for the documents written out.
    """
    out_path = Path(out_path)
    out_format = strip_suffixes(out_path)
    if out_format not in (".txt", ".jsonl"):
        raise DataError(f"{out_path}: the output must end in .txt or .jsonl (optionally .gz)")
    if max_length is not None and max_length < min_length:
        raise DataError(f"max_length ({max_length}) is smaller than min_length ({min_length})")
    reader = read_records(in_path, text_column=text_column, label_column=label_column, skip_bad=skip_bad,
                          text_mode=text_mode)
    stats = Counter()
    redactions: Counter = Counter()
    seen: set[bytes] = set()

    def cleaned() -> Iterator[dict]:
        for record in reader:
            stats["documents_in"] += 1
            stats["characters_in"] += len(record["text"])
            text = normalize_text(record["text"], keep_paragraphs=out_format == ".jsonl")
            found: Counter = Counter()
            if redact:
                text = redact_pii(text, found)
            if len(text) < min_length:
                stats["too_short"] += 1
                continue
            if max_length is not None and len(text) > max_length:
                stats["too_long"] += 1
                continue
            if dedup:
                key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
                if key in seen:
                    stats["duplicates_removed"] += 1
                    continue
                seen.add(key)
            redactions.update(found)
            stats["documents_out"] += 1
            stats["characters_out"] += len(text)
            yield {**record, "text": text}

    with atomic_path(out_path) as tmp, _open_output(tmp, out_path) as out:
        for record in cleaned():
            if out_format == ".jsonl":
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                out.write(record["text"] + "\n\n")
    return {
        "input": str(in_path),
        "output": str(out_path),
        "documents_in": stats["documents_in"],
        "documents_out": stats["documents_out"],
        "duplicates_removed": stats["duplicates_removed"],
        "too_short": stats["too_short"],
        "too_long": stats["too_long"],
        "characters_in": stats["characters_in"],
        "characters_out": stats["characters_out"],
        "redactions": dict(sorted(redactions.items())),
        "records_skipped": reader.summary.as_dict()["skipped"],
        "skipped_examples": reader.summary.as_dict()["skipped_examples"],
    }
