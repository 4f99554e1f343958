"""Packing: the examples of a batch side by side in a few rows, so that no padding is computed.

A batch of N examples is laid out in R rows of at most `capacity` tokens, balanced (`pack_rows`), padded only
to the fullest row. Each example keeps what it has alone:

    segment_ids   (R, L)  which example a token belongs to (0..N-1), -1 on the little padding left;
                          the model attends only within a segment (`layers.masks.document_mask`)
    position_ids  (R, L)  restart at 0 for each example
    token_type_ids        the example's own (sentence pairs keep their A/B segments)
    unpack_index  (N, T)  where example i's tokens lie in the flattened (R * L) rows; with `unpack_mask` (N, T)
                          the hidden states are laid out again as the padded batch, so the head pools and
                          classifies exactly what it would unpacked

`labels` are the N examples' own, in batch order, and `attention_mask` (R, L) marks real tokens (what the
Trainer counts as tokens). With the block-diagonal mask the packed logits equal the unpacked ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .padding import Example, attention_mask_for, collate_labels, example_ids


def pack_rows(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Indices of `lengths` grouped into as few rows of at most `capacity` tokens as the greedy finds, balanced so
    that the fullest row (what the others are padded to) is as short as it can be: longest first, each into the
    emptiest row (LPT scheduling), over ceil(total / capacity) rows, one more while a row overflows. Each row
    lists its examples in their batch order; a length above `capacity` gets a row of its own."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    alone = [[i] for i in order if lengths[i] > capacity]
    rest = [i for i in order if lengths[i] <= capacity]
    n_rows = -(-sum(lengths[i] for i in rest) // capacity)
    while rest:
        rows: list[list[int]] = [[] for _ in range(n_rows)]
        fill = [0] * n_rows
        for i in rest:
            r = min(range(n_rows), key=fill.__getitem__)
            rows[r].append(i)
            fill[r] += lengths[i]
        if max(fill) <= capacity:
            break
        n_rows += 1
    else:
        rows = []
    return [sorted(r) for r in alone + rows if r]


def packed_tokens(lengths: Sequence[int], capacity: int) -> int:
    """Positions computed for one batch of examples of `lengths` once packed: rows x the fullest row."""
    rows = pack_rows(lengths, capacity)
    return len(rows) * max((sum(lengths[i] for i in r) for r in rows), default=0)


def padded_tokens(lengths: Sequence[int]) -> int:
    """Positions computed for one batch with dynamic padding: examples x the longest."""
    return len(lengths) * max(lengths, default=0)


class PackingCollator:
    """Batch labelled examples (dicts with `input_ids`, [`token_type_ids`], [`label`]) packed into rows of at
    most `capacity` tokens; see the module docstring for what the batch holds."""

    def __init__(self, pad_id: int, capacity: int):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.pad_id, self.capacity = pad_id, capacity

    def __call__(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        ids = [example_ids(e) for e in examples]
        types = [example_ids(e, "token_type_ids") for e in examples] if "token_type_ids" in examples[0] else None
        rows = pack_rows([len(x) for x in ids], self.capacity)
        R, L = len(rows), max(sum(len(ids[i]) for i in row) for row in rows)
        N, T = len(ids), max(len(x) for x in ids)
        input_ids = torch.full((R, L), self.pad_id, dtype=torch.long)
        token_type_ids = torch.zeros((R, L), dtype=torch.long)
        position_ids = torch.zeros((R, L), dtype=torch.long)
        segment_ids = torch.full((R, L), -1, dtype=torch.long)
        unpack_index = torch.zeros((N, T), dtype=torch.long)
        for r, row in enumerate(rows):
            at = 0
            for i in row:
                n = len(ids[i])
                input_ids[r, at : at + n] = torch.tensor(ids[i], dtype=torch.long)
                if types is not None:
                    token_type_ids[r, at : at + n] = torch.tensor(types[i], dtype=torch.long)
                position_ids[r, at : at + n] = torch.arange(n)
                segment_ids[r, at : at + n] = i
                unpack_index[i, :n] = r * L + at + torch.arange(n)
                at += n
        batch = {
            "input_ids": input_ids,  # (R, L)
            "attention_mask": (segment_ids >= 0).long(),  # (R, L)
            "position_ids": position_ids,
            "segment_ids": segment_ids,
            "unpack_index": unpack_index,  # (N, T)
            "unpack_mask": attention_mask_for(ids, T),  # (N, T)
        }
        if types is not None:
            batch["token_type_ids"] = token_type_ids
        labels = collate_labels(examples)
        if labels is not None:
            batch["labels"] = labels  # (N,)
        return batch
