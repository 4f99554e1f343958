"""The small real data sets shipped in the repository's `data/` folder (sources and licences in data/README.md)."""
from __future__ import annotations

from pathlib import Path

from ..errors import DataError

BUNDLED = {
    "shakespeare": "shakespeare",               # 10 plays, one .txt.gz each (public domain)
    "zh_sentiment": "zh_sentiment",             # Chinese review sentiment, train/test .csv.gz (text,label)
    "bbc_news": "bbc_news",                     # BBC News topics, train/test .csv.gz (text,label)
    "bible_en_fr": "bible_en_fr",               # English -> French Bible verses, train/valid/test .jsonl.gz (en,fr)
}


def data_root() -> Path:
    """The repository's `data/` folder (next to the `damoxing` package in a source checkout)."""
    return Path(__file__).resolve().parents[2] / "data"


def bundled_path(name: str, split: str | None = None) -> Path:
    """The folder of a bundled set, or its `split` file (`"train"` / `"valid"` / `"test"`) for the labelled sets."""
    if name not in BUNDLED:
        raise DataError(f"unknown bundled data set {name!r}; choose one of {sorted(BUNDLED)}")
    path = data_root() / BUNDLED[name]
    if split is not None:
        path = next((f for f in (path / f"{split}.csv.gz", path / f"{split}.jsonl.gz") if f.exists()),
                    path / f"{split}.csv.gz")
    if not path.exists():
        raise DataError(f"{path}: bundled data not found; it ships in the repository's data/ folder "
                        "(run from a source checkout)")
    return path
