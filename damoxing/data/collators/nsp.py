"""Next-sentence-prediction examples (BERT): `[CLS] A [SEP] B [SEP]` with segment ids and a label.

B is the sentences that follow A in the same document (label 0, IsNext) or a span taken from another
document (label 1, NotNext), each with probability 1/2; the labels follow HF's `next_sentence_label`.
Pairs are built as in BERT's `create_pretraining_data.py`: sentences are gathered until a target length,
split at a random sentence boundary into A and B, then truncated longest side first, dropping a token
from the front or the back at random. Batch the examples with `MLMCollator` (masking) or
`PaddingCollator`; both pad dynamically and pass `token_type_ids` through.
"""
from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import torch

from ...errors import DataError
from .mlm import MLMCollator

IS_NEXT, NOT_NEXT = 0, 1


def truncate_pair(a: list[int], b: list[int], max_tokens: int, rng: random.Random) -> None:
    """Shorten the longer of `a` and `b` one token at a time (front or back at random) until they fit."""
    while len(a) + len(b) > max_tokens:
        longer = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


class NSPExampleBuilder:
    """Iterate NSP examples from tokenized documents: a list of documents, each a list of sentences of ids.

    `max_length` counts [CLS] and both [SEP]s. With `short_seq_prob` a pair aims at a random shorter
    length, as in BERT, so the model also sees short inputs. Each pass (`iter`) is reproducible from
    `seed` and the epoch set by `set_epoch`. A one-sentence document gives a NotNext pair when the
    coin says NotNext and nothing otherwise (it still serves as a NotNext partner), so labels stay 50/50.
    """

    def __init__(self, documents: Sequence[Sequence[Sequence[int]]], max_length: int, cls_id: int, sep_id: int,
                 seed: int = 0, short_seq_prob: float = 0.1, not_next_prob: float = 0.5):
        self.documents = [[list(s) for s in doc if len(s)] for doc in documents]
        self.documents = [doc for doc in self.documents if doc]
        if len(self.documents) < 2:
            raise DataError("next-sentence prediction needs at least 2 non-empty documents (NotNext partners "
                            "come from another document)")
        if max_length < 5:
            raise DataError(f"max_length {max_length} is too short for [CLS] A [SEP] B [SEP]")
        self.max_length = max_length
        self.cls_id = cls_id
        self.sep_id = sep_id
        self.seed = seed
        self.short_seq_prob = short_seq_prob
        self.not_next_prob = not_next_prob
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[dict]:
        rng = random.Random(f"{self.seed}:{self.epoch}")
        for index in range(len(self.documents)):
            yield from self._document_examples(index, rng)

    def _target_length(self, rng: random.Random) -> int:
        max_tokens = self.max_length - 3
        return rng.randint(2, max_tokens) if rng.random() < self.short_seq_prob else max_tokens

    def _document_examples(self, index: int, rng: random.Random) -> Iterator[dict]:
        doc = self.documents[index]
        chunk: list[list[int]] = []
        length, target, i = 0, self._target_length(rng), 0
        while i < len(doc):
            chunk.append(doc[i])
            length += len(doc[i])
            if i == len(doc) - 1 or length >= target:
                is_next = rng.random() >= self.not_next_prob
                if is_next and len(chunk) == 1:  # B must be a later sentence of this document
                    if i + 1 < len(doc):
                        i += 1
                        chunk.append(doc[i])
                    elif i > 0:
                        chunk.insert(0, doc[i - 1])
                    else:  # a one-sentence document has no IsNext pair: skip it, keeping labels 50/50
                        break
                if is_next:
                    a_end = rng.randint(1, len(chunk) - 1)
                    a = [t for s in chunk[:a_end] for t in s]
                    b = [t for s in chunk[a_end:] for t in s]
                else:
                    a_end = rng.randint(1, len(chunk) - 1) if len(chunk) > 1 else 1
                    a = [t for s in chunk[:a_end] for t in s]
                    b = self._random_span(index, max(1, target - len(a)), rng)
                    i -= len(chunk) - a_end  # the sentences not used for A are used again
                truncate_pair(a, b, self.max_length - 3, rng)
                yield self._example(a, b, IS_NEXT if is_next else NOT_NEXT)
                chunk, length, target = [], 0, self._target_length(rng)
            i += 1

    def _random_span(self, index: int, target: int, rng: random.Random) -> list[int]:
        """Consecutive sentences from a random other document, from a random start, about `target` tokens."""
        other = rng.randrange(len(self.documents) - 1)
        other += other >= index
        doc = self.documents[other]
        span: list[int] = []
        for sentence in doc[rng.randrange(len(doc)):]:
            span += sentence
            if len(span) >= target:
                break
        return span

    def _example(self, a: list[int], b: list[int], label: int) -> dict:
        input_ids = [self.cls_id, *a, self.sep_id, *b, self.sep_id]
        token_type_ids = [0] * (len(a) + 2) + [1] * (len(b) + 1)
        return {"input_ids": input_ids, "token_type_ids": token_type_ids, "next_sentence_label": label}


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
