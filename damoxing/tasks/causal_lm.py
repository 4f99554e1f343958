"""`clm`: next-token prediction for decoders. Pretraining packs documents into blocks; evaluation reads texts.

Labels are aligned with `input_ids` (the Hugging Face convention) and shifted here: position t predicts
token t + 1. Only positions with a target reach the vocabulary projection, through the chunked
linear cross-entropy, so (B, T, V) logits never exist in training.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from ..data.collators import collate_clm, pack_documents
from ..data.readers import read_records
from ..errors import ConfigError
from ..evaluation.metrics import LanguageModelMetrics
from ..layers.losses import IGNORE_INDEX, linear_cross_entropy
from .base import SupervisedTask, TaskOutput, as_paths, model_inputs


class CausalLM(SupervisedTask):
    name = "clm"
    head = "lm"
    family = "decoder"
    pretraining = True
    perplexity = "clm"

    def targets(self, batch: dict) -> dict[str, torch.Tensor]:
        return {"clm": (batch["labels"][:, 1:] != IGNORE_INDEX).sum()}

    def loss(self, model, batch: dict) -> TaskOutput:
        hidden = model.forward_features(
            batch["input_ids"], batch.get("attention_mask"), batch.get("position_ids"), batch.get("document_ids")
        )  # (B, T, C)
        labels = batch["labels"][:, 1:]  # position t predicts token t + 1
        where = labels != IGNORE_INDEX
        h = hidden[:, :-1][where]  # (N, C): only positions with a target reach the vocabulary projection
        return TaskOutput({"clm": linear_cross_entropy(h, model.head.proj, labels[where])})

    def target_logits(self, model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = model.forward_features(
            batch["input_ids"], batch.get("attention_mask"), batch.get("position_ids"), batch.get("document_ids")
        )  # (B, T, C)
        labels = batch["labels"][:, 1:]
        where = labels != IGNORE_INDEX
        return model.forward_head(hidden[:, :-1][where]), labels[where]  # (N, V), (N,)

    # ----- pretraining data
    def head_fraction(self, data) -> float:
        return 1.0

    def prepare(self, tokenizer, docs: list[str], run) -> tuple[list[dict], object]:
        """Documents -> (packed blocks of data.seq_len tokens, their collator) for `Batches`."""
        if tokenizer.eos_id is None:
            raise ConfigError("tokenizer: causal-LM pretraining needs an end-of-text token (eos).")
        ids = tokenizer(docs, add_special_tokens=False, padding=False, truncation=False, return_tensors=None)[
            "input_ids"
        ]
        blocks = [
            {k: torch.tensor(v, dtype=torch.long) for k, v in block.items()}
            for block in pack_documents(ids, run.data.seq_len, tokenizer.eos_id)
        ]
        return blocks, collate_clm()

    # ----- evaluation on a file of texts: mean next-token loss and perplexity
    def known_labels(self, names) -> None:
        return None

    def read(
        self, paths, columns: dict, labels=None, skip_bad: bool = False, with_labels: bool = True, summary=None
    ) -> Iterator[dict]:
        for path in as_paths(paths):
            reader = read_records(path, text_column=columns.get("text_column", "text"), skip_bad=skip_bad)
            yield from ({"text": r["text"]} for r in reader)
            if summary is not None:
                summary.add(reader.summary)

    def encode(self, tokenizer, records: Sequence[dict], max_length: int | None) -> dict[str, torch.Tensor]:
        batch = tokenizer([r["text"] for r in records], max_length=max_length, padding=True, truncation=True)
        batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, IGNORE_INDEX)
        return batch

    def outputs(self, model, batch: dict) -> torch.Tensor:
        return model(**model_inputs(model, batch))  # (B, T, V)

    def metrics(self, names, worst_k: int = 20, tokenizer=None) -> LanguageModelMetrics:
        return LanguageModelMetrics()

    def score(self, metrics, outputs, labels, records) -> tuple[float, int]:
        target = labels[:, 1:]
        loss = F.cross_entropy(
            outputs[:, :-1].flatten(0, 1), target.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        tokens = int((target != IGNORE_INDEX).sum())
        metrics.update(loss, tokens)
        return float(loss), tokens
