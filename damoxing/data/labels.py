"""Label names <-> integer ids, in a stable order that is saved next to a model."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence

from ..atomic import atomic_open
from ..errors import DataError


def _sort_key(name: str) -> tuple:
    """Numbers in numeric order ("2" before "10"), then everything else alphabetically."""
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


class LabelMap:
    """An ordered list of label names; a label's id is its index.

    Built from data (`from_labels`: sorted unique names) or given explicitly (`LabelMap(["neg", "pos"])`).
    Labels are compared as strings, so a JSON label `1` and a CSV label `"1"` are the same label.
    """

    def __init__(self, names: Sequence[object]):
        self.names = [str(n) for n in names]
        if len(set(self.names)) != len(self.names):
            raise DataError(f"duplicate label names in {self.names}")
        self._ids = {name: i for i, name in enumerate(self.names)}

    @classmethod
    def from_labels(cls, labels: Iterable[object]) -> LabelMap:
        """The sorted unique labels seen (numeric-aware sort), so the same data always gives the same ids."""
        return cls(sorted({str(label) for label in labels}, key=_sort_key))

    def encode(self, label: object) -> int:
        try:
            return self._ids[str(label)]
        except KeyError:
            raise DataError(f"unknown label {label!r}; known labels are {self.names}") from None

    def decode(self, label_id: int) -> str:
        return self.names[int(label_id)]

    @property
    def label2id(self) -> dict[str, int]:
        return dict(self._ids)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, label: object) -> bool:
        return str(label) in self._ids

    def __iter__(self):
        return iter(self.names)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelMap) and self.names == other.names

    def __repr__(self) -> str:
        return f"LabelMap({self.names})"

    def save(self, path: str | os.PathLike) -> None:
        """Write `{"labels": [...]}` atomically."""
        with atomic_open(path) as f:
            json.dump({"labels": self.names}, f, ensure_ascii=False, indent=2)
            f.write("\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> LabelMap:
        try:
            with open(path, encoding="utf-8-sig") as f:  # without a byte-order mark
                data = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"{path}: cannot read the label map ({e})") from None
        if not isinstance(data, dict) or not isinstance(data.get("labels"), list):
            raise DataError(f'{path}: a label map is a JSON object {{"labels": [...]}}')
        return cls(data["labels"])
