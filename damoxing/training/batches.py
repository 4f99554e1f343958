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

IGNORE = -100


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
def pack_blocks(docs: Sequence[Sequence[int]], seq_len: int, eos_id: int | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Concatenate documents (each followed by eos) and cut into blocks of seq_len: (ids, document index)."""
    ids, doc = [], []
    for d, toks in enumerate(docs):
        toks = list(toks) + ([eos_id] if eos_id is not None else [])
        ids.extend(toks)
        doc.extend([d] * len(toks))
    ids, doc = torch.tensor(ids, dtype=torch.long), torch.tensor(doc, dtype=torch.long)
    n = len(ids) // seq_len
    return list(zip(ids[:n * seq_len].view(n, seq_len), doc[:n * seq_len].view(n, seq_len)))


def collate_clm(document_mask: bool = False) -> Callable:
    """Blocks -> input_ids, labels (aligned; the task shifts). With document_mask, attention stays inside
    each packed document, positions restart per document and no token is predicted across a boundary."""

    def collate(examples, generators):
        ids = torch.stack([e[0] for e in examples])  # (B, T)
        batch = {"input_ids": ids, "labels": ids.clone()}
        if document_mask:
            doc = torch.stack([e[1] for e in examples])
            doc = doc - doc[:, :1]  # (B, T), 0 for the first document of each block
            first = torch.ones_like(doc, dtype=torch.bool)
            first[:, 1:] = doc[:, 1:] != doc[:, :-1]
            batch["labels"][first] = IGNORE
            start = torch.where(first, torch.arange(ids.shape[1]).expand_as(ids), 0).cummax(1).values
            batch.update(document_ids=doc, position_ids=torch.arange(ids.shape[1]) - start)
        return batch

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


def mask_tokens(ids: torch.Tensor, can_mask: torch.Tensor, word_start: torch.Tensor, g: torch.Generator, *,
                prob: float, mask_id: int, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking of one sequence: choose ~prob of the words (all their pieces), then 80% [MASK],
    10% a random token, 10% unchanged. Returns (input ids, labels with -100 where nothing is predicted)."""
    word = word_start.long().cumsum(0)  # word index per position
    n_words = int(word[-1]) + 1 if len(word) else 0
    chosen = (torch.rand(n_words, generator=g) < prob)[word] & can_mask
    if can_mask.any() and not chosen.any():  # at least one target per sequence
        candidates = can_mask.nonzero().squeeze(1)
        chosen = (word == word[candidates[torch.randint(len(candidates), (1,), generator=g)]]) & can_mask
    labels = torch.where(chosen, ids, IGNORE)
    r = torch.rand(len(ids), generator=g)
    random_ids = torch.randint(vocab_size, (len(ids),), generator=g)
    out = torch.where(chosen & (r < 0.8), mask_id, ids)
    out = torch.where(chosen & (r >= 0.8) & (r < 0.9), random_ids, out)
    return out, labels


class MLMCollator:
    """Chunks -> [CLS] A [SEP] (B [SEP]) with masking; with `nsp`, B is the next chunk (label 0) or,
    with probability nsp_prob or at a document's end, a random chunk (label 1), as in BERT."""

    def __init__(self, chunks: list[list[int]], next_chunk: list[int], *, seq_len: int, cls_id: int, sep_id: int,
                 pad_id: int, mask_id: int, vocab_size: int, continuation: torch.Tensor | None = None,
                 special: Sequence[int] = (), mask_prob: float = 0.15, nsp: bool = True, nsp_prob: float = 0.5):
        self.chunks, self.next_chunk, self.seq_len = chunks, next_chunk, seq_len
        self.cls_id, self.sep_id, self.pad_id, self.mask_id, self.vocab_size = cls_id, sep_id, pad_id, mask_id, vocab_size
        self.continuation = continuation  # (V,) bool: id is a word-piece continuation ("##ing")
        self.special = torch.tensor(sorted(special), dtype=torch.long)
        self.mask_prob, self.nsp, self.nsp_prob = mask_prob, nsp, nsp_prob

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
        rows, types, labels, nsp = [], [], [], []
        for i, g in zip(examples, generators):
            a, b, label = self._pair(i, g)
            ids = torch.tensor([self.cls_id, *a, self.sep_id, *b] + ([self.sep_id] if b else []), dtype=torch.long)
            can_mask = ~torch.isin(ids, self.special)
            word_start = ~self.continuation[ids] if self.continuation is not None else torch.ones_like(can_mask)
            masked, y = mask_tokens(ids, can_mask, word_start, g, prob=self.mask_prob, mask_id=self.mask_id,
                                    vocab_size=self.vocab_size)
            rows.append(masked)
            labels.append(y)
            types.append(torch.tensor([0] * (len(a) + 2) + [1] * (len(ids) - len(a) - 2), dtype=torch.long))
            nsp.append(label)
        T = max(len(r) for r in rows)  # dynamic padding: to the longest row of this batch
        pad = lambda xs, v: torch.stack([torch.nn.functional.pad(x, (0, T - len(x)), value=v) for x in xs])  # noqa: E731
        batch = {"input_ids": pad(rows, self.pad_id), "attention_mask": pad([torch.ones_like(r) for r in rows], 0),
                 "token_type_ids": pad(types, 0), "labels": pad(labels, IGNORE)}
        if self.nsp:
            batch["next_sentence_label"] = torch.tensor(nsp, dtype=torch.long)
        return batch
