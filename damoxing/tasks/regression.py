"""`regression`: one number per text or pair (records `{"text", "label": float}`), MSE, R²/Pearson/Spearman."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from ..errors import DataError
from ..evaluation.metrics import RegressionMetrics
from ..layers.losses import wide
from .base import TaskOutput, as_paths, count
from .classification import Classification, text_of


class Regression(Classification):
    name = "regression"
    metric = ("loss", "min")
    linear_probe = "ridge"

    def known_labels(self, names) -> None:
        return None

    def read(
        self, paths, columns: dict, labels=None, skip_bad: bool = False, with_labels: bool = True, summary=None
    ) -> Iterator[dict]:
        """Records whose label is a finite number; anything else is an error naming the record."""
        records = super().read(paths, columns, None, skip_bad, with_labels, summary)
        if not with_labels:
            yield from records
            return
        for number, record in enumerate(records, start=1):
            try:
                value = float(record["label"])
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise DataError(
                    f"{', '.join(map(str, as_paths(paths)))}: record {number}: label {record['label']!r} "
                    "is not a number (regression needs numeric scores)"
                )
            yield {**record, "label": value}

    def label_map(self, records):
        return records, None

    def num_outputs(self, labels) -> int:
        return 1

    def label_tensor(self, records) -> torch.Tensor:
        return torch.tensor([r["label"] for r in records], dtype=torch.float32)

    def label_value(self, label):
        return float(label)

    def targets(self, batch: dict) -> dict[str, torch.Tensor]:
        return {"loss": torch.tensor(len(batch["labels"]))}

    def loss(self, model, batch: dict) -> TaskOutput:
        pred = wide(self.outputs(model, batch)).squeeze(-1)  # (B,)
        y = batch["labels"].to(pred.dtype)
        loss = F.mse_loss(pred, y, reduction="sum")
        return TaskOutput({"loss": loss}, {"mae": ((pred - y).abs().sum().detach(), count(len(y), y))})

    def metrics(self, names, worst_k: int = 20, tokenizer=None) -> RegressionMetrics:
        return RegressionMetrics()

    def score(self, metrics, outputs, labels, records) -> tuple[float, int]:
        pred = outputs.squeeze(-1)
        metrics.update(pred, labels)
        return float(F.mse_loss(pred, labels, reduction="sum")), len(labels)

    def rows(self, tokenizer, records, outputs, names, max_length) -> Iterator[dict]:
        for record, score in zip(records, outputs.squeeze(-1).tolist()):
            yield {**text_of(record), "score": score}
