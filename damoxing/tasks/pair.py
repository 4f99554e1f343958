"""`pair`: one label per pair of texts (records `{"text_a", "text_b", "label"}`), e.g. entailment or paraphrase.

The chain is classification's; the records need a second text column (`data.text_pair_column`), and the
tokenizer encodes both texts into one sequence with [SEP] between them (and token type ids for BERT).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ..errors import ConfigError
from .classification import Classification


class Pair(Classification):
    name = "pair"
    pairs = True

    def read(
        self, paths, columns: dict, labels=None, skip_bad: bool = False, with_labels: bool = True, summary=None
    ) -> Iterator[dict]:
        if columns.get("text_pair_column") in (None, ""):
            raise ConfigError("data.text_pair_column: the pair task needs the column of the second text.")
        return super().read(paths, columns, labels, skip_bad, with_labels, summary)

    def inputs(self, texts: Sequence[str]) -> Iterator[dict]:
        """Command-line pairs are written 'first text ||| second text'."""
        for text in texts:
            first, sep, second = text.partition("|||")
            if not text.strip():
                yield {"text_a": "", "text_b": ""}  # an empty input: its prediction row says so
                continue
            if not sep:
                raise ConfigError(f"a pair model needs two texts: write 'first ||| second', not {text!r}")
            yield {"text_a": first.strip(), "text_b": second.strip()}
