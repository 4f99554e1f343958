"""`classification`: one label per text (records `{"text", "label"}`), cross-entropy, accuracy/P/R/F1."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data.formats import strip_suffixes
from ..data.labels import LabelMap
from ..data.readers import TEXT_SUFFIXES, ReadSummary, read_records
from ..evaluation.metrics import ClassificationMetrics
from ..layers.losses import wide
from .base import PROBABILITY_DIGITS, SupervisedTask, TaskOutput, accuracy, as_paths


class Classification(SupervisedTask):
    name = "classification"
    head = "sequence"
    metric = ("accuracy", "max")
    linear_probe = "logistic"
    pairs = False
    finetune = True  # sentence-pair classification reads two text columns (see pair.py)

    # ----- records
    def read(
        self,
        paths,
        columns: dict,
        labels: LabelMap | None = None,
        skip_bad: bool = False,
        with_labels: bool = True,
        summary: ReadSummary | None = None,
    ) -> Iterator[dict]:
        """Records with label ids (when `labels` is given), raw label strings, or (with_labels=False) no label:
        then a plain-text file is one record per line, blank lines included (see SupervisedTask.read), and
        each record carries `columns["keep_columns"]` and an `id` column, if any, under "kept"."""
        pair = columns.get("text_pair_column")  # a name, a position (0 too), or "" / None: no pair
        for path in as_paths(paths):
            is_text = not with_labels and is_text_file(path)
            reader = read_records(
                path,
                text_column=columns.get("text_column", "text"),
                text_pair_column=pair,
                label_column=columns.get("label_column", "label") if with_labels else None,
                labels=labels if with_labels else None,
                skip_bad=skip_bad,
                text_mode="line" if is_text else None,
                keep_blank=not with_labels,
                error_records=not with_labels,
                header=columns.get("header") or "auto",
                keep_columns=None if with_labels else list(columns.get("keep_columns") or ()),
            )
            yield from reader
            if summary is not None:
                summary.add(reader.summary)

    def label_map(self, records: list[dict]) -> tuple[list[dict], LabelMap]:
        label_map = LabelMap.from_labels(r["label"] for r in records)
        return [{**r, "label": label_map.encode(r["label"])} for r in records], label_map

    # ----- batches
    @staticmethod
    def texts(records: Sequence[dict]) -> tuple[list[str], list[str] | None]:
        """(texts, pairs or None) of single-sentence or sentence-pair records."""
        if records and "text_a" in records[0]:
            return [r["text_a"] for r in records], [r["text_b"] for r in records]
        return [r["text"] for r in records], None

    def label_tensor(self, records: Sequence[dict]) -> torch.Tensor:
        return torch.tensor([r["label"] for r in records], dtype=torch.long)

    def label_value(self, label):
        return int(label)

    def encode(self, tokenizer, records: Sequence[dict], max_length: int | None) -> dict[str, torch.Tensor]:
        texts, pairs = self.texts(records)
        batch = tokenizer(texts, pairs, max_length=max_length, padding=True, truncation=True)
        if records and "label" in records[0]:
            batch["labels"] = self.label_tensor(records)
        return batch

    def examples(self, tokenizer, records: Sequence[dict], max_length: int | None) -> list[dict]:
        texts, pairs = self.texts(records)
        batch = tokenizer(texts, pairs, max_length=max_length, padding=False, truncation=True, return_tensors=None)
        out = []
        for row, record in enumerate(records):
            example = {"input_ids": batch["input_ids"][row]}
            if "token_type_ids" in batch:
                example["token_type_ids"] = batch["token_type_ids"][row]
            if "label" in record:
                example["label"] = self.label_value(record["label"])
            out.append(example)
        return out

    # ----- training
    def loss(self, model, batch: dict) -> TaskOutput:
        logits = wide(self.outputs(model, batch))  # (B, labels)
        y = batch["labels"]
        return TaskOutput({"loss": F.cross_entropy(logits, y, reduction="sum")}, {"accuracy": accuracy(logits, y)})

    def target_logits(self, model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return self.outputs(model, batch), batch["labels"]  # (B, labels), (B,)

    # ----- evaluation and prediction
    def metrics(self, names: list[str], worst_k: int = 20, tokenizer=None) -> ClassificationMetrics:
        return ClassificationMetrics(len(names), names, worst_k=worst_k)

    def score(self, metrics, outputs, labels, records) -> tuple[float, int]:
        texts = [r.get("text") or f"{r.get('text_a')} || {r.get('text_b')}" for r in records]
        metrics.update(outputs, labels, texts=[t[:300] for t in texts])
        return float(F.cross_entropy(outputs, labels, reduction="sum")), len(labels)

    def rows(self, tokenizer, records, outputs, names, max_length) -> Iterator[dict]:
        probs = outputs.softmax(-1)
        conf, best = probs.max(-1)
        for record, p, c, b in zip(records, probs.tolist(), conf.tolist(), best.tolist()):
            yield {
                **text_of(record),
                "label": names[b],
                "probability": round(c, PROBABILITY_DIGITS),
                "probabilities": {n: round(v, PROBABILITY_DIGITS) for n, v in zip(names, p)},
            }


def text_of(record: dict) -> dict:
    return {k: record[k] for k in ("text", "text_a", "text_b") if k in record}


def is_text_file(path: Path) -> bool:
    return path.is_file() and strip_suffixes(path) in TEXT_SUFFIXES
