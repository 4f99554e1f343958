"""The task contract. A task owns its whole chain: records -> batch -> loss -> metrics -> prediction row.

Training (the Trainer knows nothing else about the objective):

    targets(batch) -> {"mlm": n_masked, "nsp": n_pairs}      counts, known before the forward pass
    loss(model, batch) -> TaskOutput(losses={"mlm": summed_ce, "nsp": summed_ce},
                                     metrics={"mlm_acc": (n_correct, n_masked), ...})
    items(batch) -> int                                       what throughput counts: tokens, images, rows

`losses` are *sums* over targets, never means. The Trainer adds up `targets` over every micro-batch of
an optimiser step (and over all ranks) first, then back-propagates sum(losses[k] / total[k]), so
4 micro-batches of 4 give the same update as one batch of 16. `metrics` are (numerator, denominator)
pairs summed over a whole evaluation.

Supervised tasks (fine-tuning, `evaluate`, `predict`) add, in `SupervisedTask`:

    read(paths, columns, labels, skip_bad, with_labels, summary)       records from files (lazily)
    inputs(texts) -> records                                           from command-line strings
    corpus(records) -> texts                                           what a new tokenizer is trained on
    preprocessor(tokenizer, model, options, records) -> tokenizer      what `tokenizer` is below (text: the
                                                                       tokenizer; images: an ImageProcessor)
    encode(tokenizer, records, max_length) -> batch                    padded tensors (+ labels)
    examples(tokenizer, records, max_length) -> [example]              prepared once, for `collate`
    collate(tokenizer, training) -> fn(examples, generators) -> batch  training and validation batches
    outputs(model, batch) -> tensor (or a dict of them)                what score and rows read
    metrics(names, tokenizer=) -> accumulator; score(acc, outputs, labels, records) -> (loss sum, count)
    rows(tokenizer, records, outputs, names, max_length) -> prediction dicts

`configure(options)` returns the task with a run's settings (label smoothing, decoding); most tasks have none.

A new task is one file with one class, registered in `tasks/__init__.py`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..data.collators import PaddingCollator
from ..data.labels import LabelMap
from ..data.readers import ReadSummary
from ..errors import ConfigError
from ..layers.losses import IGNORE_INDEX

PROBABILITY_DIGITS = 6  # prediction rows round every probability to this many decimals (probability and probabilities)


@dataclass
class TaskOutput:
    losses: dict[str, torch.Tensor]  # term -> loss summed over its targets in this micro-batch
    metrics: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # name -> (sum, count)


class Task:
    """What the Trainer needs: summed losses, their target counts, and how many items a batch holds."""

    name = ""
    head: str | None = None  # the head kind the model needs ("sequence", "token", "pretraining", "lm", ...)
    perplexity: str | None = None  # term whose mean loss is exponentiated into a perplexity
    metric: tuple[str, str] = ("loss", "min")  # default model-selection metric and its mode
    family: str | None = None  # the model family it needs ("encoder", "decoder", "seq2seq"); None: any
    pretraining = False  # whether `damoxing pretrain` runs it (it has `prepare(tokenizer, docs, run)`)
    unit = "tokens"  # what `items` counts; the logs report {unit}_per_s
    finetune = False  # whether `damoxing finetune` trains it (a new head over labelled records)

    def loss(self, model: nn.Module, batch: dict) -> TaskOutput:
        raise NotImplementedError

    def configure(self, options: dict) -> Task:
        """This task with a run's settings taken from `options` (finetune config fields, finetune.json)."""
        return self

    def settings(self) -> dict:
        """The settings `configure` took that evaluation and prediction need again (saved in finetune.json)."""
        return {}

    def targets(self, batch: dict) -> dict[str, torch.Tensor]:
        return {"loss": (batch["labels"] != IGNORE_INDEX).sum()}

    def items(self, batch: dict) -> int:
        """Tokens in the batch (non-padding); image and tabular tasks count rows instead."""
        mask = batch.get("attention_mask")
        return int(mask.sum()) if mask is not None else batch["input_ids"].numel()

    def target_logits(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, classes) logits at the N positions that have a label, and those labels (N,): what
        distillation compares between student and teacher."""
        raise NotImplementedError(f"the {self.name} task has no logits to distil")


class SupervisedTask(Task):
    """A task over labelled records that fine-tuning, evaluation and prediction all share."""

    linear_probe: str | None = None  # the `features` method's classifier: "logistic", "ridge", or None

    def read(
        self,
        paths,
        columns: dict,
        labels: LabelMap | None = None,
        skip_bad: bool = False,
        with_labels: bool = True,
        summary: ReadSummary | None = None,
    ) -> Iterator[dict]:
        """Records from files, lazily; bad records stop with a DataError, or with `skip_bad` are counted in
        `summary` (a ReadSummary). `with_labels=False` reads prediction input: one record per input row, in
        order, a blank row with empty text and (with `skip_bad`) a bad one as {"error", "where", "message"}."""
        raise NotImplementedError

    def label_map(self, records: list[dict]) -> tuple[list[dict], LabelMap | None]:
        """Training records with label ids, and the label map built from them (None: no classes)."""
        return records, None

    def known_labels(self, names: list[str]) -> LabelMap | None:
        """The label map a saved model's label names give (evaluation rejects labels outside it)."""
        return LabelMap(names)

    def num_outputs(self, labels: LabelMap | None) -> int:
        return len(labels)

    def inputs(self, texts: Sequence[str]) -> Iterator[dict]:
        return iter({"text": t} for t in texts)

    def preprocessor(self, tokenizer, model: nn.Module, options: dict, records: Sequence[dict]):
        """What turns this task's records into model inputs (the `tokenizer` argument of the methods below),
        given the loaded one (None for a fresh preset), the model, the config's `transforms` section and the
        training records. Text tasks need a tokenizer and read no `transforms`."""
        if options:
            raise ConfigError(
                f"transforms: the {self.name} task reads text and takes no transforms; remove the section"
            )
        if tokenizer is None:
            raise ConfigError(
                "tokenizer: a preset model needs a tokenizer: {path: FOLDER}, or {train: true, kind: "
                "unigram, vocab_size: 8000} to train one on the training data."
            )
        return tokenizer

    def collate(self, tokenizer, training: bool = True) -> Callable[[list, list | None], dict]:
        """collate(examples, generators) -> batch for the Trainer's batch sources; text: dynamic padding."""
        pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else (tokenizer.eos_id or 0)
        collator = PaddingCollator(pad_id)
        return lambda examples, generators: collator(examples)

    def record_key(self, record: dict) -> bytes:
        """What identifies a record's input and label (the features cache key)."""
        return repr((record.get("text"), record.get("text_a"), record.get("text_b"), record.get("label"))).encode()

    def corpus(self, records: Iterable[dict]) -> Iterator[str]:
        """The texts of records, for training a tokenizer on them."""
        for r in records:
            yield from (r[k] for k in ("text", "text_a", "text_b") if k in r)

    def encode(self, tokenizer, records: Sequence[dict], max_length: int | None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def examples(self, tokenizer, records: Sequence[dict], max_length: int | None) -> list[dict]:
        raise NotImplementedError

    def metrics(self, names: list[str], worst_k: int = 20, tokenizer=None):
        raise NotImplementedError

    def score(self, metrics, outputs: torch.Tensor, labels: torch.Tensor, records: Sequence[dict]) -> tuple[float, int]:
        raise NotImplementedError

    def rows(
        self, tokenizer, records: Sequence[dict], outputs: torch.Tensor, names: list[str], max_length: int | None
    ) -> Iterator[dict]:
        raise NotImplementedError

    def outputs(self, model: nn.Module, batch: dict) -> torch.Tensor:
        """The head's output for a batch: (B, labels), (B, T, labels) or (B, 1)."""
        hidden = model.forward_features(**model_inputs(model, batch))
        return model.forward_head(hidden, batch.get("attention_mask"))


# ---------------------------------------------------------------------- helpers the task files share
def model_inputs(model: nn.Module, batch: dict) -> dict:
    """The entries of `batch` that `model.forward_features` takes."""
    accepted = inspect.signature(model.forward_features).parameters
    return {k: v for k, v in batch.items() if k in accepted}


def target_loss(model: nn.Module, batch: dict, label_smoothing: float = 0.0) -> TaskOutput:
    """Teacher forcing for encoder-decoder models: the summed cross-entropy of the decoder over `labels`.

    Only positions with a target reach the vocabulary projection (chunked: no (B, T, V) logits in training);
    without gradients (evaluation) the token accuracy is measured too.
    """
    memory = model.forward_features(batch["input_ids"], batch["attention_mask"])  # (B, S, C)
    # targets are right-padded: causal attention already keeps every real position away from the padding,
    # so no decoder mask is passed and attention takes its fused causal path
    hidden = model.decode(batch["decoder_input_ids"], memory, batch["attention_mask"])  # (B, T, C)
    y = batch["labels"]
    where = y != IGNORE_INDEX
    h, y = hidden[where], y[where]  # (N, C), (N,)
    out = TaskOutput({"loss": model.head.loss(h, y, label_smoothing)})
    if not torch.is_grad_enabled():
        out.metrics["accuracy"] = accuracy(model.head(h), y)
    return out


def count(n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(n, device=like.device)


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return (logits.argmax(-1) == y).sum(), count(len(y), y)


def chunks(items: Iterable, size: int) -> Iterator[list]:
    """Lists of `size` items (the last may be shorter), lazily."""
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


SORT_WINDOW = 1024  # records an inference pass reads (and sorts by length) at a time, at least one batch


def token_lengths(task: SupervisedTask, tokenizer, records: Sequence[dict], max_length: int | None) -> list[int]:
    """Each text record's token count (a text-to-text record's source), by the task's own tokenization. Images
    and table rows are all one size after their transforms: they count 0 each, and keep their order."""
    if task.unit != "tokens":
        return [0] * len(records)
    return [len(example["input_ids"]) for example in task.examples(tokenizer, records, max_length)]


def length_sorted_batches(positions: Iterable[int], lengths: Sequence[int] | dict, batch_size: int) -> list[list[int]]:
    """Batches of `positions` in order of `lengths[position]`: an inference pass pads each batch to its longest
    row, so similar lengths together compute little padding. The caller puts each result back at its
    position, so the data's order is kept."""
    return list(chunks(sorted(positions, key=lambda i: lengths[i]), batch_size))


def as_paths(paths) -> list[Path]:
    return [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
