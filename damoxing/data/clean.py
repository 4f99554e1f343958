"""Corpus cleaning (`damoxing data clean IN OUT`): normalise, deduplicate, filter by length, redact PII.

Each document goes through, in order: Unicode NFKC; control and invisible characters removed (below);
whitespace normalised (runs of spaces and tabs become one space, lines are stripped, runs of blank lines
become one); blank documents dropped (counted as `blank`: also the blank lines of plain text read line by
line, and CSV rows of blank fields); PII redaction; the length filter (in characters);
exact-duplicate removal. Duplicates are found on the text before redaction, together with the label, so two
records that differ only in their personal data, or only in their label, are both kept (`identical_after_redaction`
counts the kept ones that came out the same as an earlier one). The output is written atomically: an interrupted
run leaves no output, or the previous one, intact.

Invisible characters. Controls (but newline and tab), surrogates, private-use characters, format characters and
the other default-ignorable code points (variation selectors, U+034F, Hangul fillers, Mongolian selectors, tags)
are removed, except where they do visible work:

- ZWJ and ZWNJ between two non-ASCII letters, marks or symbols: emoji ZWJ sequences (👩‍💻), ZWNJ in Persian
  (می‌خواهم), joiners after an Indic virama;
- a variation selector after a non-ASCII letter, mark, number, symbol or punctuation (❤️, CJK ideographic
  variants), or in a keycap (1️⃣: a digit, # or *, the selector, U+20E3);
- Mongolian free variation selectors and the vowel separator after a Mongolian character;
- tag characters after a black flag or another tag (the subdivision flags, 🏴 + tags);
- the Hangul fillers U+115F/U+1160 next to a conjoining jamo.

The Braille blank U+2800 is removed unless it sits next to another Braille cell (Braille text and art keep it).
A joiner or selector kept this way cannot hide personal data: redaction matches on a copy without them.
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
from .pii import INVISIBLE, redact_pii
from .readers import read_records

_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{2,}")
_ASCII_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_LONE_BRAILLE_BLANKS = re.compile(r"(?<![\u2800-\u28ff])\u2800+(?![\u2800-\u28ff])")
_KEEP = {"\n", "\t"}
_DROP_CATEGORIES = {"Cc", "Cf", "Cs", "Co"}
_JOINERS = {"\u200c", "\u200d"}  # ZWNJ, ZWJ
_KEYCAP_BASES = set("0123456789#*")
_BLACK_FLAG = "\U0001f3f4"


def _in(char: str, first: int, last: int) -> bool:
    return bool(char) and first <= ord(char) <= last


def _is_variation_selector(char: str) -> bool:
    return _in(char, 0xFE00, 0xFE0F) or _in(char, 0xE0100, 0xE01EF)


def _is_jamo(char: str) -> bool:
    return _in(char, 0x1100, 0x11FF) or _in(char, 0xA960, 0xA97F) or _in(char, 0xD7B0, 0xD7FF)


def _joinable(char: str) -> bool:
    return (
        bool(char)
        and not char.isascii()
        and (unicodedata.category(char)[0] in "LM" or unicodedata.category(char) in ("So", "Sk"))
    )


def _does_visible_work(prev: str, char: str, nxt: str) -> bool:
    """Whether an invisible `char` between the kept `prev` and the next `nxt` changes what is shown (docstring)."""
    if char in _JOINERS:
        return _joinable(prev) and _joinable(nxt)
    if _is_variation_selector(char):
        if prev in _KEYCAP_BASES:
            return nxt == "\u20e3"
        return (
            bool(prev)
            and not prev.isascii()
            and not _is_variation_selector(prev)
            and unicodedata.category(prev)[0] in "LMNSP"
        )
    if _in(char, 0x180B, 0x180F):
        return _in(prev, 0x1800, 0x18AF)
    if _in(char, 0xE0020, 0xE007F):
        return prev == _BLACK_FLAG or _in(prev, 0xE0020, 0xE007F)
    if char in ("\u115f", "\u1160"):
        return _is_jamo(prev) or _is_jamo(nxt)
    return False


def _remove_invisible(text: str) -> str:
    """Controls, format characters and other invisible characters out, except where they do visible work."""
    if text.isascii():
        return _ASCII_CONTROLS.sub("", text)
    text = _LONE_BRAILLE_BLANKS.sub("", text)
    kept: list[str] = []
    for i, char in enumerate(text):
        if (
            char in _KEEP
            or char == "\u2800"
            or (unicodedata.category(char) not in _DROP_CATEGORIES and not INVISIBLE.match(char))
            or _does_visible_work(kept[-1] if kept else "", char, text[i + 1 : i + 2])
        ):
            kept.append(char)
    return "".join(kept)


def normalize_text(text: str, keep_paragraphs: bool = True) -> str:
    """NFKC, control and invisible characters out (see the module docstring), whitespace normalised.

    With `keep_paragraphs` a run of blank lines becomes one blank line; without, one newline (so the
    document never contains a blank line, which is the document separator of plain-text files).
    """
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    visible = _remove_invisible(text)
    if len(visible) != len(text):  # what was between two characters may have kept them from composing
        visible = unicodedata.normalize("NFKC", visible)
    lines = [_SPACES.sub(" ", line).strip() for line in visible.split("\n")]
    text = "\n".join(lines).strip()
    return _BLANK_LINES.sub("\n\n" if keep_paragraphs else "\n", text)


def _open_output(tmp: Path, out_path: Path):
    if out_path.name.endswith(".gz"):
        return gzip.open(tmp, "wt", encoding="utf-8")
    return open(tmp, "w", encoding="utf-8")


def clean_corpus(
    in_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    min_length: int = 1,
    max_length: int | None = None,
    redact: bool = True,
    dedup: bool = True,
    skip_bad: bool = False,
    text_column: str = "text",
    label_column: str | None = None,
    text_mode: str | None = None,
) -> dict:
    """Clean a corpus file or folder into `out_path` (`.txt` or `.jsonl`, optionally `.gz`) and return a summary.

    `.txt` output separates documents by a blank line (blank lines inside a document become single
    newlines so it reads back the same); `.jsonl` output has `{"text"}` (plus `"label"` if one was read).
    Redactions are counted for the documents written out; duplicates removed are also counted per label
    (`duplicates_by_label`) when a label is read.
    """
    out_path = Path(out_path)
    out_format = strip_suffixes(out_path)
    if out_format not in (".txt", ".jsonl"):
        raise DataError(f"{out_path}: the output must end in .txt or .jsonl (optionally .gz)")
    if out_path.is_dir():
        raise DataError(f"{out_path}: the output is a folder; give the path of a file, e.g. {out_path / 'clean.jsonl'}")
    if max_length is not None and max_length < min_length:
        raise DataError(f"max_length ({max_length}) is smaller than min_length ({min_length})")
    reader = read_records(
        in_path,
        text_column=text_column,
        label_column=label_column,
        skip_bad=skip_bad,
        text_mode=text_mode,
        keep_blank=True,
    )
    stats = Counter()
    redactions: Counter = Counter()
    duplicates_by_label: Counter = Counter()
    seen: set[bytes] = set()
    seen_redacted: set[bytes] = set()

    def key(label: str | None, text: str) -> bytes:
        labelled = text if label is None else f"{label}\x00{text}"  # NUL never survives normalize_text
        return hashlib.blake2b(labelled.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def cleaned() -> Iterator[dict]:
        for record in reader:
            stats["documents_in"] += 1
            stats["characters_in"] += len(record["text"])
            original = normalize_text(record["text"], keep_paragraphs=out_format == ".jsonl")
            if not original:
                stats["blank"] += 1
                continue
            found: Counter = Counter()
            text = redact_pii(original, found) if redact else original
            if len(text) < min_length:
                stats["too_short"] += 1
                continue
            if max_length is not None and len(text) > max_length:
                stats["too_long"] += 1
                continue
            label = record.get("label")
            if dedup:
                original_key = key(label, original)
                if original_key in seen:
                    stats["duplicates_removed"] += 1
                    if label is not None:
                        duplicates_by_label[label] += 1
                    continue
                seen.add(original_key)
                if found:
                    redacted_key = key(label, text)
                    stats["identical_after_redaction"] += redacted_key in seen_redacted or redacted_key in seen
                    seen_redacted.add(redacted_key)
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
        "blank": stats["blank"],
        "duplicates_removed": stats["duplicates_removed"],
        "duplicates_by_label": dict(sorted(duplicates_by_label.items())),
        "identical_after_redaction": stats["identical_after_redaction"],
        "too_short": stats["too_short"],
        "too_long": stats["too_long"],
        "characters_in": stats["characters_in"],
        "characters_out": stats["characters_out"],
        "redactions": dict(sorted(redactions.items())),
        "records_skipped": reader.summary.as_dict()["skipped"],
        "skipped_examples": reader.summary.as_dict()["skipped_examples"],
    }
