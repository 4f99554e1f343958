"""Batch sources that can start anywhere: the Trainer's view of data.

A batch source is anything with

    len(source)                      micro-batches per epoch on this rank
    source.batches(epoch, start=0)   an iterator of batch dicts, beginning at micro-batch `start`

and gives the same batches for the same (epoch, index) every time. That is what makes resume exact
without replaying the data seen so far. `Batches` implements it over a list of pre-tokenised examples:
a seeded permutation per epoch, indexed directly, split across ranks, collated with one random generator
per example seeded from (seed, epoch, example), so random masking does not depend on how examples are
batched or sharded (2 ranks x 8 see the same masks as 1 x 16).
"""
from __future__ import annotations

from typing import Callable, Iterator, Sequence

import torch

from ..data.collators import MLMCollator, PackedCLMCollator


def example_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_000_003 + index)


class Batches:
    """Batches of `examples` collated by `collate(examples, generators) -> dict of tensors`."""

    def __init__(self, examples: Sequence, collate: Callable, batch_size: int, *, seed: int = 0, shuffle: bool = True,
                 drop_last: bool = True, rank: int = 0, world: int = 1):
        self.examples, self.collate, self.batch_size = examples, collate, batch_size
        self.seed, self.shuffle, self.drop_last, self.rank, self.world = seed, shuffle, drop_last, rank, world
        per_step = batch_size * world  # examples consumed by all ranks together per micro-batch
        self.n = len(examples) // per_step if drop_last else -(-len(examples) // per_step)

    def __len__(self) -> int:
        return self.n

    def order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(len(self.examples))
        return torch.randperm(len(self.examples), generator=torch.Generator().manual_seed(self.seed * 7919 + epoch))

    def batches(self, epoch: int, start: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        order, per_step = self.order(epoch), self.batch_size * self.world
        for i in range(start, self.n):
            chunk = order[i * per_step:(i + 1) * per_step]
            mine = chunk[self.rank::self.world].tolist()  # rank r takes every world-th example of the step
            if not mine:
                continue
            yield self.collate([self.examples[j] for j in mine], [example_generator(self.seed, epoch, j) for j in mine])


# ---------------------------------------------------------------- causal LM: packed blocks
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


# ---------------------------------------------------------------- masked LM (+ next sentence)
def segment_chunks(docs: Sequence[Sequence[Sequence[int]]], max_tokens: int) -> tuple[list[list[int]], list[int]]:
    """Each document is a list of tokenised sentences; group consecutive sentences into chunks of at most
    max_tokens. Returns the chunks and, per chunk, the index of the next chunk of its document (or -1)."""
    chunks, nxt = [], []
    for sentences in docs:
        first, cur = len(chunks), []
        for s in sentences:
            if cur and len(cur) + len(s) > max_tokens:
                chunks.append(cur)
                cur = []
            cur = cur + list(s[:max_tokens])
        if cur:
            chunks.append(cur)
        nxt.extend(range(first + 1, len(chunks)))
        nxt.append(-1)
    return chunks, nxt


class MLMChunkCollator:
    """Chunk indices -> [CLS] A [SEP] (B [SEP]) rows with token_type_ids, masked and padded by `mlm` (a
    `damoxing.data.MLMCollator`, one generator per row). With `nsp`, B is the next chunk (label 0) or, with
    probability nsp_prob or at a document's end, a random chunk (label 1), as in BERT."""

    def __init__(self, chunks: list[list[int]], next_chunk: list[int], mlm: MLMCollator, *, seq_len: int,
                 cls_id: int, sep_id: int, nsp: bool = True, nsp_prob: float = 0.5):
        self.chunks, self.next_chunk, self.mlm, self.seq_len = chunks, next_chunk, mlm, seq_len
        self.cls_id, self.sep_id, self.nsp, self.nsp_prob = cls_id, sep_id, nsp, nsp_prob

    def _pair(self, i: int, g: torch.Generator) -> tuple[list[int], list[int], int]:
        a = self.chunks[i]
        if not self.nsp:
            return a[: self.seq_len - 2], [], 0
        j, label = self.next_chunk[i], 0
        if j < 0 or torch.rand((), generator=g) < self.nsp_prob:
            j, label = int(torch.randint(len(self.chunks), (), generator=g)), 1
        b = self.chunks[j]
        a, b = list(a), list(b)
        while len(a) + len(b) > self.seq_len - 3:  # truncate the longer segment first
            (a if len(a) >= len(b) else b).pop()
        return a, b, label

    def __call__(self, examples, generators) -> dict[str, torch.Tensor]:
        rows = []
        for i, g in zip(examples, generators):
            a, b, label = self._pair(i, g)
            ids = [self.cls_id, *a, self.sep_id, *b] + ([self.sep_id] if b else [])
            row = {"input_ids": ids, "token_type_ids": [0] * (len(a) + 2) + [1] * (len(ids) - len(a) - 2)}
            if self.nsp:
                row["next_sentence_label"] = label
            rows.append(row)
        return self.mlm(rows, generators)  # each row masked with its own generator, after its pairing draws
