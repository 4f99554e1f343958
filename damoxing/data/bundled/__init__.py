"""The small real data sets that ship inside the package, one sub-folder of this folder each.

pyproject.toml declares them package data, so an installed damoxing has them as a checkout does. Their sources
and licences are in the repository's data/README.md; data/build.py rebuilds them byte for byte.
"""
from __future__ import annotations

from pathlib import Path

from ...errors import DataError

BUNDLED = {
    "shakespeare": "shakespeare",               # 10 plays, one .txt.gz each (public domain)
    "zh_sentiment": "zh_sentiment",             # Chinese review sentiment, train/test .csv.gz (text,label)
    "bbc_news": "bbc_news",                     # BBC News topics, train/test .csv.gz (text,label)
    "bible_en_fr": "bible_en_fr",               # English -> French Bible verses, train/valid/test .jsonl.gz (en,fr)
}


def data_root() -> Path:
    """The folder holding the bundled sets: this package's own folder."""
    return Path(__file__).resolve().parent


def bundled_path(name: str, split: str | None = None) -> Path:
    """The folder of a bundled set, or its `split` file (`"train"` / `"valid"` / `"test"`) for the labelled sets."""
    if name not in BUNDLED:
        raise DataError(f"unknown bundled data set {name!r}; choose one of {sorted(BUNDLED)}")
    path = data_root() / BUNDLED[name]
    if split is not None:
        path = next((f for f in (path / f"{split}.csv.gz", path / f"{split}.jsonl.gz") if f.exists()),
                    path / f"{split}.csv.gz")
    if not path.exists():
        raise DataError(f"{path}: bundled data not found; this damoxing install lacks its package data "
                        "(reinstall it, from a wheel or a source checkout)")
    return path
