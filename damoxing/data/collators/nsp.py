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
    probability nsp_prob or at a document's end, a random chunk (label 1), as in BERT. `continued`, one flag
    list per chunk (1: the token begins inside a word, from a word segmenter), goes along as the rows'
    `continued` for whole-word masking."""

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
        continued: Sequence[Sequence[int]] | None = None,
    ):
        if continued is not None and [len(c) for c in continued] != [len(c) for c in chunks]:
            raise ValueError("continued: one flag per token of each chunk")
        self.chunks, self.next_chunk, self.mlm, self.seq_len = chunks, next_chunk, mlm, seq_len
        self.cls_id, self.sep_id, self.nsp, self.nsp_prob = cls_id, sep_id, nsp, nsp_prob
        self.continued = continued

    def _pair(self, i: int, g: torch.Generator) -> tuple[int, int, int, int, int]:
        """(chunk A, its kept length, chunk B or -1, its kept length, NSP label)."""
        if not self.nsp:
            return i, min(len(self.chunks[i]), self.seq_len - 2), -1, 0, 0
        j, label = self.next_chunk[i], IS_NEXT
        if j < 0 or torch.rand((), generator=g) < self.nsp_prob:
            j, label = int(torch.randint(len(self.chunks), (), generator=g)), NOT_NEXT
        la, lb = len(self.chunks[i]), len(self.chunks[j])
        while la + lb > self.seq_len - 3:  # truncate the longer segment first
            la, lb = (la - 1, lb) if la >= lb else (la, lb - 1)
        return i, la, j, lb, label

    def __call__(self, examples, generators) -> dict[str, torch.Tensor]:
        rows = []
        for i, g in zip(examples, generators):
            i, la, j, lb, label = self._pair(i, g)
            a, b = self.chunks[i][:la], self.chunks[j][:lb] if j >= 0 else []
            ids = [self.cls_id, *a, self.sep_id, *b] + ([self.sep_id] if b else [])
            row = {"input_ids": ids, "token_type_ids": [0] * (len(a) + 2) + [1] * (len(ids) - len(a) - 2)}
            if self.continued is not None:
                fb = list(self.continued[j][:lb]) if j >= 0 else []
                row["continued"] = [0, *self.continued[i][:la], 0, *fb] + ([0] if b else [])
            if self.nsp:
                row["next_sentence_label"] = label
            rows.append(row)
        return self.mlm(rows, generators)  # each row masked with its own generator, after its pairing draws
