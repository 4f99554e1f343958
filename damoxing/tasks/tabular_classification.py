"""`tabular_classification`: one label per row of numeric features (CSV / TSV), for the MLP family.

Records are `{"fields", "source", "label"}` (data/tabular.py); the `tokenizer` argument of the methods is
a `TabularProcessor` (data/processors.py) fitted on the training rows: the feature columns and their
mean and standard deviation, saved as preprocessor_config.json and applied again by evaluate and predict.

The config's `transforms` section may choose `columns` (default: every column but the label) and turn
`standardize` off.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..config import check, from_dict
from ..data.labels import LabelMap
from ..data.processors import TabularProcessor
from ..data.tabular import read_table
from ..errors import ConfigError, UserError
from .base import as_paths
from .classification import Classification


@dataclass(frozen=True)
class TabularOptions:
    columns: tuple[str, ...] = ()  # feature columns, in this order; empty: every column but the label
    standardize: bool = True  # subtract the training mean, divide by the training standard deviation


class TabularClassification(Classification):
    """Classification's loss, metrics and prediction rows over feature vectors instead of texts."""

    name = "tabular_classification"
    unit = "rows"

    def items(self, batch: dict) -> int:
        return batch["features"].shape[0]

    # ----- records
    def read(
        self,
        paths,
        columns: dict,
        labels: LabelMap | None = None,
        skip_bad: bool = False,
        with_labels: bool = True,
        summary=None,
    ) -> Iterator[dict]:
        # `summary` stays empty: these readers stop at the first bad file with a DataError naming it
        yield from read_table(
            as_paths(paths),
            label_column=columns.get("label_column") or "label",
            labels=labels,
            with_labels=with_labels,
            skip_bad=skip_bad,
        )

    def inputs(self, texts: Sequence[str]) -> Iterator[dict]:
        raise UserError("a tabular model predicts rows of a file: use --data FILE.csv")

    def preprocessor(self, tokenizer, model: nn.Module, options: dict, records: Sequence[dict]) -> TabularProcessor:
        """A pretrained folder's processor as it is, or one fitted on the training rows."""
        if tokenizer is not None:
            if not isinstance(tokenizer, TabularProcessor):
                raise ConfigError("model.path: the folder has no tabular processor (preprocessor_config.json)")
            if options:
                raise ConfigError("transforms: the model's feature columns are fixed; remove the section")
            return tokenizer
        opts = from_dict(TabularOptions, options, prefix="transforms")
        processor = TabularProcessor.fit(records, opts.columns, opts.standardize)
        dim = getattr(model.config, "input_dim", None)
        check(
            dim in (None, len(processor.columns)),
            "model.input_dim",
            f"{dim}, but the data has {len(processor.columns)} feature columns ({', '.join(processor.columns[:8])}"
            f"{' ...' if len(processor.columns) > 8 else ''}); set model.input_dim: {len(processor.columns)}",
        )
        return processor

    # ----- batches
    def encode(self, tokenizer: TabularProcessor, records: Sequence[dict], max_length: int | None) -> dict:
        batch = {"features": tokenizer.features(records)}  # (B, F)
        if records and "label" in records[0]:
            batch["labels"] = torch.tensor([r["label"] for r in records], dtype=torch.long)
        return batch

    def examples(self, tokenizer: TabularProcessor, records: Sequence[dict], max_length: int | None) -> list[dict]:
        x = tokenizer.features(records)  # converted once; batches only stack rows
        return [{"features": row, "label": r["label"]} for row, r in zip(x, records)]

    def collate(self, tokenizer, training: bool = True) -> Callable[[list, list | None], dict]:
        return lambda examples, generators: {
            "features": torch.stack([e["features"] for e in examples]),
            "labels": torch.tensor([e["label"] for e in examples]),
        }

    def record_key(self, record: dict) -> bytes:
        return json.dumps([record["fields"], record.get("label")], sort_keys=True).encode()

    # ----- evaluation and prediction
    def score(self, metrics, outputs, labels, records) -> tuple[float, int]:
        metrics.update(outputs, labels, texts=[r["source"] for r in records])
        return float(torch.nn.functional.cross_entropy(outputs, labels, reduction="sum")), len(labels)

    def rows(self, tokenizer, records, outputs, names, max_length) -> Iterator[dict]:
        for record, row in zip(records, super().rows(tokenizer, records, outputs, names, max_length)):
            yield {"row": record["source"], **row}
