"""Sentence splitting for English and Chinese text (used to build next-sentence-prediction pairs).

Chinese terminators (。！？；… and full-width ！？；) end a sentence wherever they stand. English
terminators (. ! ?) end one only before whitespace and a word that does not start in lower case, and a
period after a known abbreviation (Mr., e.g.), a single initial (J.) or inside a number (3.14) does not.
Closing quotes and brackets after a terminator stay with the sentence they close. A blank line always
ends a sentence.
"""

from __future__ import annotations

import re

ABBREVIATIONS = {
    "mr",
    "mrs",
    "ms",
    "dr",
    "prof",
    "sr",
    "jr",
    "st",
    "vs",
    "etc",
    "e.g",
    "i.e",
    "no",
    "inc",
    "ltd",
    "co",
    "fig",
    "u.s",
    "u.k",
    "a.m",
    "p.m",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
    "gen",
    "gov",
    "rev",
    "mt",
    "approx",
    "dept",
    "est",
    "vol",
    "cf",
    "al",
}
_CLOSERS = "\"'”’」』）)】》]"
_TERMINATOR = re.compile(rf"(?:[。！？；!?;]+|…+|\.{{3,}}|\.(?![0-9]))[{re.escape(_CLOSERS)}]*|\n[ \t]*\n\s*")
_CJK_END = set("。！？；…")


_NEXT_WORD = re.compile(r"\s*(\S?)")
_LAST_WORD = re.compile(r"([A-Za-z][A-Za-z.]*)$")


def _english_boundary(text: str, start: int, end: int) -> bool:
    """Is the ASCII terminator text[start:end] a sentence end? It needs whitespace and a non-lower-case next word.

    Only a short window around the terminator is read, so splitting stays linear in the text length.
    """
    if end < len(text) and not text[end].isspace():
        return False
    if _NEXT_WORD.match(text, end).group(1).islower():
        return False
    if text[start] == "." and not text[start:end].startswith(".."):
        word = _LAST_WORD.search(text[max(0, start - 40) : start])
        if word and (word.group(1).lower() in ABBREVIATIONS or len(word.group(1)) == 1):
            return False
    return True


def split_sentences(text: str) -> list[str]:
    """Split `text` into sentences, each stripped; empty pieces are dropped."""
    sentences, begin = [], 0
    for m in _TERMINATOR.finditer(text):
        if _is_boundary(text, m.start(), m.end()):
            piece = text[begin : m.end()].strip()
            if piece:
                sentences.append(piece)
            begin = m.end()
    tail = text[begin:].strip()
    if tail:
        sentences.append(tail)
    return sentences


def _is_boundary(text: str, start: int, end: int) -> bool:
    mark = text[start]
    if mark == "\n" or mark in _CJK_END:  # a blank line, or 。！？；…
        return True
    if mark in "!?;" and _cjk_before(text, start):  # full-width ！？； become ASCII under NFKC
        return True
    if mark == ";":  # an English semicolon joins clauses
        return False
    return _english_boundary(text, start, end)


def _cjk_before(text: str, index: int) -> bool:
    """Whether the character before `index` is CJK or CJK punctuation."""
    return index > 0 and "\u3000" <= text[index - 1] <= "\u9fff"
