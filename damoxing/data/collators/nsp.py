"""Next-sentence prediction (BERT): `[CLS] A [SEP] B [SEP]` rows with segment ids and a label, for pretraining.

`segment_chunks` groups each document's tokenised sentences into chunks of whole sentences; `MLMChunkCollator`
pairs a chunk A with the chunk that follows it in its document (label 0, IsNext) or with a random chunk
(label 1, NotNext), then masks and pads the rows with an `MLMCollator`. The labels follow HF's
`next_sentence_label`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .mlm import MLMCollator

IS_NEXT, NOT_NEXT = 0, 1


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
        if len(chunks) > first:  # a document without tokens adds no chunk, so no entry either
            nxt.extend(range(first + 1, len(chunks)))
            nxt.append(-1)
    return chunks, nxt


class MLMChunkCollator:
    """Chunk indices -> [CLS] A [SEP] (B [SEP]) rows with token_type_ids, masked and padded by `mlm` (a
    `damoxing.data.MLMCollator`, one generator per row). With `nsp`, B is the next chunk (label 0) or, with
    probability nsp_prob or at a document's end, a random chunk (label 1), as in BERT."""

    def __init__(
        self,
        chunks: list[list[int]],
        next_chunk: list[int],
        mlm: MLMCollator,
        *,
        seq_len: int,
        cls_id: int,
        sep_id: int,
        nsp: bool = True,
        nsp_prob: float = 0.5,
    ):
        self.chunks, self.next_chunk, self.mlm, self.seq_len = chunks, next_chunk, mlm, seq_len
        self.cls_id, self.sep_id, self.nsp, self.nsp_prob = cls_id, sep_id, nsp, nsp_prob

    def _pair(self, i: int, g: torch.Generator) -> tuple[list[int], list[int], int]:
        a = self.chunks[i]
        if not self.nsp:
            return a[: self.seq_len - 2], [], 0
        j, label = self.next_chunk[i], IS_NEXT
        if j < 0 or torch.rand((), generator=g) < self.nsp_prob:
            j, label = int(torch.randint(len(self.chunks), (), generator=g)), NOT_NEXT
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
