"""`token_classification`: a tag per word (NER, POS). JSON Lines `{"tokens": [...], "tags": [...]}`.

The first sub-word of each word carries its tag; other sub-words, special tokens and padding get
IGNORE_INDEX, as in Hugging Face's token-classification recipe.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from ..data.formats import Problem, read_jsonl, strip_suffixes
from ..data.labels import LabelMap
from ..data.readers import SKIP_HINT, ReadSummary, bad_text
from ..errors import DataError
from ..evaluation.metrics import ClassificationMetrics
from ..layers.losses import IGNORE_INDEX, wide
from .base import PROBABILITY_DIGITS, SupervisedTask, TaskOutput, as_paths, chunks


class TokenClassification(SupervisedTask):
    name = "token_classification"
    head = "token"
    metric = ("accuracy", "max")
    finetune = True

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
        """Records {"tokens", "tags"} (tag names), {"tokens", "labels"} (with `labels`), or {"tokens"}.

        Without labels (prediction) every line is a record: an empty word list too, and with `skip_bad` a bad
        line is {"error", "where", "message"}; otherwise bad lines stop the read, or are skipped and counted."""
        tokens_column, tags_column = columns.get("tokens_column", "tokens"), columns.get("tags_column", "tags")
        summary = summary if summary is not None else ReadSummary()
        for path in as_paths(paths):
            if not path.exists():
                raise DataError(f"{path}: no such file")
            if strip_suffixes(path) not in (".jsonl", ".ndjson"):
                raise DataError(
                    f'{path}: token classification reads JSON Lines ({{"{tokens_column}": [words], '
                    f'"{tags_column}": [tags]}} per line), not {strip_suffixes(path) or "this file"}'
                )
            summary.files += 1
            empty = True
            for row in read_jsonl(path):
                problem = row if isinstance(row, Problem) else _problem(row, tokens_column, tags_column, with_labels)
                if problem is None and with_labels and labels is not None:
                    unknown = [t for t in row.fields[tags_column] if str(t) not in labels]
                    if unknown:
                        problem = Problem(
                            row.where, "unknown_label", f"unknown tag {unknown[0]!r}; known tags are {labels.names}"
                        )
                if problem is not None and not skip_bad:
                    raise DataError(f"{problem.where}: {problem.message}; {SKIP_HINT}")
                empty = False
                if problem is not None and with_labels:
                    summary.skip(problem)
                    continue
                summary.records += 1
                if problem is not None:
                    yield {"error": problem.reason, "where": problem.where, "message": problem.message}
                    continue
                record = {"tokens": [str(t) for t in row.fields[tokens_column]]}
                if with_labels:
                    tags = [str(t) for t in row.fields[tags_column]]
                    record.update(
                        {"labels": [labels.encode(t) for t in tags]} if labels is not None else {"tags": tags}
                    )
                yield record
            if empty:
                if not skip_bad:
                    raise DataError(f"{path}: the file is empty (no records); {SKIP_HINT}")
                summary.skip(Problem(str(path), "empty_file", "the file is empty (no records)"))

    def label_map(self, records: list[dict]) -> tuple[list[dict], LabelMap]:
        label_map = LabelMap.from_labels(t for r in records for t in r["tags"])
        return [{"tokens": r["tokens"], "labels": [label_map.encode(t) for t in r["tags"]]} for r in records], label_map

    def inputs(self, texts: Sequence[str]) -> Iterator[dict]:
        return iter({"tokens": t.split()} for t in texts)

    # ----- batches
    def encode(self, tokenizer, records: Sequence[dict], max_length: int | None) -> dict[str, torch.Tensor]:
        """Pre-split words -> ids, and per-token `labels` when the records have them."""
        encodings = tokenizer.encode_words([r["tokens"] for r in records], max_length)
        length = max(len(e.ids) for e in encodings)
        pad = tokenizer.pad_id if tokenizer.pad_id is not None else (tokenizer.eos_id or 0)
        ids = torch.full((len(records), length), pad, dtype=torch.long)
        mask = torch.zeros((len(records), length), dtype=torch.long)
        labels = torch.full((len(records), length), IGNORE_INDEX, dtype=torch.long)
        for row, (enc, record) in enumerate(zip(encodings, records)):
            n = len(enc.ids)
            ids[row, :n] = torch.tensor(enc.ids)
            mask[row, :n] = 1
            previous = None
            for position, word in enumerate(enc.word_ids):
                if word is not None and word != previous and "labels" in record:
                    labels[row, position] = int(record["labels"][word])
                previous = word
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        if tokenizer.use_token_type_ids:
            batch["token_type_ids"] = torch.zeros_like(ids)
        return batch

    def examples(self, tokenizer, records: Sequence[dict], max_length: int | None) -> list[dict]:
        out = []
        for part in chunks(records, 1024):
            batch = self.encode(tokenizer, part, max_length)
            for row in range(len(part)):
                n = int(batch["attention_mask"][row].sum())
                example = {
                    "input_ids": batch["input_ids"][row, :n].tolist(),
                    "labels": batch["labels"][row, :n].tolist(),
                }
                if "token_type_ids" in batch:
                    example["token_type_ids"] = [0] * n
                out.append(example)
        return out

    # ----- training
    def loss(self, model, batch: dict) -> TaskOutput:
        logits = wide(self.outputs(model, batch))  # (B, T, labels)
        y = batch["labels"][:, : logits.shape[1]]
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
        where = y != IGNORE_INDEX
        correct = ((logits.argmax(-1) == y) & where).sum()
        return TaskOutput({"loss": loss}, {"accuracy": (correct, where.sum())})

    # ----- evaluation and prediction
    def metrics(self, names: list[str], worst_k: int = 20, tokenizer=None) -> ClassificationMetrics:
        return ClassificationMetrics(len(names), names, worst_k=worst_k, ignore_index=IGNORE_INDEX)

    def score(self, metrics, outputs, labels, records) -> tuple[float, int]:
        labels = labels[:, : outputs.shape[1]]
        metrics.update(outputs.flatten(0, 1), labels.flatten())
        loss = F.cross_entropy(outputs.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
        return float(loss), int((labels != IGNORE_INDEX).sum())

    def rows(self, tokenizer, records, outputs, names, max_length) -> Iterator[dict]:
        """Per word: the prediction at its first sub-word (words cut off by max_length get no label)."""
        probs = outputs.softmax(-1)
        encodings = tokenizer.encode_words([r["tokens"] for r in records], max_length)
        for record, enc, p in zip(records, encodings, probs):
            first = {}
            for position, word in enumerate(enc.word_ids):
                if word is not None and word not in first:
                    first[word] = position
            labels, confidence = [], []
            for w in range(len(record["tokens"])):
                if w in first:
                    c, b = p[first[w]].max(-1)
                    labels.append(names[int(b)])
                    confidence.append(round(float(c), PROBABILITY_DIGITS))
                else:
                    labels.append(None)
                    confidence.append(None)
            yield {"tokens": record["tokens"], "labels": labels, "probabilities": confidence}


def _problem(row, tokens_column: str, tags_column: str, with_tags: bool) -> Problem | None:
    """What is wrong with a line; without tags (prediction input) an empty word list is allowed."""
    tokens = row.fields.get(tokens_column)
    if not isinstance(tokens, list) or not (tokens or not with_tags) or not all(isinstance(t, str) for t in tokens):
        return Problem(row.where, "bad_value", f"field {tokens_column!r} must be a non-empty list of words")
    bad = bad_text("".join(tokens), row, tokens_column)
    if bad is not None:
        return bad
    if with_tags:
        tags = row.fields.get(tags_column)
        if not isinstance(tags, list) or len(tags) != len(tokens):
            return Problem(
                row.where,
                "bad_value",
                f"field {tags_column!r} must be a list with one tag per word ({len(tokens)} words)",
            )
    return None
