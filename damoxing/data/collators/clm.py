"""Causal-LM batches: documents packed into full blocks without padding.

Packing (`pack_documents`) joins documents with EOS and cuts the stream into full blocks of `block_size`
tokens; the remainder shorter than a block is dropped, so no block holds padding. Inside a block each
document piece gets its own `document_ids` value (0, 1, 2, ... per block) and `position_ids` that start
at 0, so a model that attends only within a document (the decoder given `document_ids`, see
layers.masks.document_mask) computes for each token exactly what it would compute for the document run alone.
A document cut by a block boundary continues in the next block as a new piece, with positions from 0.

Labels follow HF: `labels` equal `input_ids` and the model shifts them (token t predicts label t + 1);
the first token of every piece has label -100, so no token learns to predict across a boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import torch

from .padding import IGNORE_INDEX


def pack_documents(documents: Iterable[Sequence[int]], block_size: int, eos_id: int | None) -> Iterator[dict]:
    """Yield blocks `{"input_ids", "position_ids", "document_ids"}` (lists of `block_size` ints), lazily.

    Each document is followed by `eos_id` (unless None). Memory holds one block plus one document.
    """
    if block_size < 1:
        raise ValueError("block_size must be at least 1")
    ids: list[int] = []
    positions: list[int] = []
    doc_ids: list[int] = []
    for document in documents:
        tokens = list(document) + ([eos_id] if eos_id is not None else [])
        start = 0
        while start < len(tokens):
            if not ids:  # a fresh block: this piece is document 0 of the block, from position 0
                piece_pos, piece_doc = 0, 0
            elif start == 0:
                piece_pos, piece_doc = 0, doc_ids[-1] + 1
            else:
                piece_pos, piece_doc = positions[-1] + 1, doc_ids[-1]
            take = min(block_size - len(ids), len(tokens) - start)
            ids += tokens[start : start + take]
            positions += range(piece_pos, piece_pos + take)
            doc_ids += [piece_doc] * take
            start += take
            if len(ids) == block_size:
                yield {"input_ids": ids, "position_ids": positions, "document_ids": doc_ids}
                ids, positions, doc_ids = [], [], []


def packed_labels(input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
    """`input_ids` with -100 at the first token of each document piece (position 0)."""
    return torch.where(position_ids == 0, torch.full_like(input_ids, IGNORE_INDEX), input_ids)


class PackedCLMCollator:
    """Stack blocks from `pack_documents` (lists or 1-D tensors) into `input_ids`, `position_ids`,
    `document_ids`, `labels` (B, T)."""

    def __call__(self, blocks: Sequence[dict]) -> dict[str, torch.Tensor]:
        lengths = {len(b["input_ids"]) for b in blocks}
        if len(lengths) != 1:
            raise ValueError(f"packed blocks must all have the same length, got {sorted(lengths)}")
        stack = lambda key: torch.stack([torch.as_tensor(b[key], dtype=torch.long) for b in blocks])
        input_ids, position_ids, document_ids = stack("input_ids"), stack("position_ids"), stack("document_ids")
        return {
            "input_ids": input_ids,
            "position_ids": position_ids,
            "document_ids": document_ids,
            "labels": packed_labels(input_ids, position_ids),
        }


def collate_clm(document_mask: bool = False) -> Callable:
    """Blocks from `damoxing.data.pack_documents` -> input_ids, labels (= input_ids; the task shifts), attention
    across the whole block. With document_mask, `PackedCLMCollator`'s batch: attention stays inside each packed
    document, positions restart per document and no token is predicted across a boundary."""
    packed = PackedCLMCollator()

    def collate(examples, generators):
        batch = packed(examples)
        if document_mask:
            return batch
        return {"input_ids": batch["input_ids"], "labels": batch["input_ids"].clone()}

    return collate
