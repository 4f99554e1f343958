"""Records -> model inputs: tokenize a batch of `{text}` / `{text_a, text_b}` / `{tokens, tags}` records.

Padding is dynamic (to the longest row of the batch). Only the inputs a model's `forward_features`
accepts are passed to it, so the same code drives encoders (token_type_ids) and decoders (none).
"""
from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import nn

IGNORE_INDEX = -100  # label of padding, special tokens and continuation sub-words in token classification


def model_inputs(model: nn.Module, batch: dict) -> dict:
    """The entries of `batch` that `model.forward_features` takes."""
    accepted = inspect.signature(model.forward_features).parameters
    return {k: v for k, v in batch.items() if k in accepted}


def record_texts(records: Sequence[dict]) -> tuple[list[str], list[str] | None]:
    """(texts, pairs or None) of single-sentence or sentence-pair records."""
    if records and "text_a" in records[0]:
        return [r["text_a"] for r in records], [r["text_b"] for r in records]
    return [r["text"] for r in records], None


def encode_sequences(tokenizer, records: Sequence[dict], max_length: int | None) -> dict[str, torch.Tensor]:
    """input_ids, attention_mask (token_type_ids) for a batch of (pair) text records, right-padded."""
    texts, pairs = record_texts(records)
    return tokenizer(texts, pairs, max_length=max_length, padding=True, truncation=True)


def encode_tokens(tokenizer, records: Sequence[dict], max_length: int | None) -> dict[str, torch.Tensor]:
    """Pre-split words with per-word tags -> ids and per-token `labels` (first sub-word keeps the tag).

    Records are `{"tokens": [word, ...], "labels": [tag id, ...]}`; other sub-words, special tokens and
    padding get IGNORE_INDEX, as in Hugging Face's token-classification recipe.
    """
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


def encode(tokenizer, records: Sequence[dict], max_length: int | None, task: str) -> dict[str, torch.Tensor]:
    """One padded batch with `labels` when the records have them (class ids, floats or per-token tags)."""
    if task == "token":
        return encode_tokens(tokenizer, records, max_length)
    batch = encode_sequences(tokenizer, records, max_length)
    if records and "label" in records[0]:
        dtype = torch.float32 if task == "regression" else torch.long
        batch["labels"] = torch.tensor([r["label"] for r in records], dtype=dtype)
    return batch


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


def pooled_features(model: nn.Module, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """(B, T, C) -> (B, C): exactly what the model's sequence head sees (its own pooling)."""
    if hasattr(model, "pool"):
        return model.pool(hidden, attention_mask)
    from ..layers import pool

    mask = attention_mask[:, -hidden.shape[1]:] if attention_mask is not None else None
    return pool(hidden, mask, model.config.pooling)


def pretokenize(tokenizer, records: Sequence[dict], max_length: int | None, task: str,
                chunk: int = 1024) -> list[dict]:
    """Tokenize every record once (truncated, unpadded) into examples for `PaddingCollator`."""
    examples = []
    for part in chunks(records, chunk):
        if task == "token":
            batch = encode_tokens(tokenizer, part, max_length)
            for row in range(len(part)):
                n = int(batch["attention_mask"][row].sum())
                example = {"input_ids": batch["input_ids"][row, :n].tolist(),
                           "labels": batch["labels"][row, :n].tolist()}
                if "token_type_ids" in batch:
                    example["token_type_ids"] = [0] * n
                examples.append(example)
            continue
        texts, pairs = record_texts(part)
        batch = tokenizer(texts, pairs, max_length=max_length, padding=False, truncation=True, return_tensors=None)
        for row, record in enumerate(part):
            example = {"input_ids": batch["input_ids"][row]}
            if "token_type_ids" in batch:
                example["token_type_ids"] = batch["token_type_ids"][row]
            if "label" in record:
                example["label"] = float(record["label"]) if task == "regression" else int(record["label"])
            examples.append(example)
    return examples
