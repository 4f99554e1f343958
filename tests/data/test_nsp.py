"""Next-sentence prediction as pretraining builds it: chunks of whole sentences, IsNext/NotNext pairs, segment ids,
truncation, masking per row (`segment_chunks` + `MLMChunkCollator`)."""

import math
import random

import torch

from damoxing.data import IGNORE_INDEX, MLMCollator
from damoxing.data.collators import IS_NEXT, NOT_NEXT, MLMChunkCollator, segment_chunks

PAD, CLS, SEP, MASK = 0, 1, 2, 3
SEQ_LEN = 64
VOCAB = 1_000_000  # above every token id make_documents writes


def make_documents(count: int, seed: int) -> list[list[list[int]]]:
    """Document d holds tokens 1000 * (d + 1) + position, so every token tells its document and place."""
    rng = random.Random(seed)
    documents = []
    for d in range(count):
        sentences, position = [], 0
        for _ in range(rng.randint(1, 12)):
            length = rng.randint(3, 25)
            sentences.append([1000 * (d + 1) + position + i for i in range(length)])
            position += length
        documents.append(sentences)
    return documents


def make_collator(chunks, next_chunk, seq_len: int = SEQ_LEN, nsp: bool = True, nsp_prob: float = 0.5):
    mlm = MLMCollator(vocab_size=VOCAB, mask_id=MASK, pad_id=PAD, special_ids=[PAD, CLS, SEP, MASK])
    return MLMChunkCollator(
        chunks, next_chunk, mlm, seq_len=seq_len, cls_id=CLS, sep_id=SEP, nsp=nsp, nsp_prob=nsp_prob
    )


def generators(indices: list[int], seed: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed * 1_000_003 + i) for i in indices]


def rows(batch: dict) -> list[tuple[list[int], list[int], list[int]]]:
    """Per row, unpadded: the original ids (masked positions hold their label), token types and labels."""
    original = torch.where(batch["labels"] != IGNORE_INDEX, batch["labels"], batch["input_ids"])
    out = []
    for row in range(len(original)):
        n = int(batch["attention_mask"][row].sum())
        out.append(
            (original[row, :n].tolist(), batch["token_type_ids"][row, :n].tolist(), batch["labels"][row, :n].tolist())
        )
    return out


def split_pair(ids: list[int], types: list[int]) -> tuple[list[int], list[int]]:
    first_sep = ids.index(SEP)
    assert ids[0] == CLS and ids[-1] == SEP
    assert types == [0] * (first_sep + 1) + [1] * (len(ids) - first_sep - 1)
    return ids[1:first_sep], ids[first_sep + 1 : -1]


def test_chunks_are_whole_sentences_in_document_order():
    documents = make_documents(50, seed=0)
    chunks, next_chunk = segment_chunks(documents, max_tokens=30)
    assert len(next_chunk) == len(chunks)
    sentence_starts = {s[0] for doc in documents for s in doc}
    i = 0
    for doc in documents:  # following next_chunk from a document's first chunk reads the document back
        tokens = []
        while True:
            assert 0 < len(chunks[i]) <= 30 and chunks[i][0] in sentence_starts
            tokens += chunks[i]
            if next_chunk[i] < 0:
                break
            assert next_chunk[i] == i + 1
            i += 1
        assert tokens == [t for s in doc for t in s]
        i += 1
    assert i == len(chunks)


def test_long_sentences_are_cut_and_empty_documents_add_nothing():
    chunks, next_chunk = segment_chunks([[list(range(10)), [20, 21]], [], [[]], [[30, 31, 32]]], max_tokens=4)
    assert chunks == [[0, 1, 2, 3], [20, 21], [30, 31, 32]]
    assert next_chunk == [1, -1, -1]


def test_pairs_over_4k_rows():
    documents = make_documents(600, seed=0)
    chunks, next_chunk = segment_chunks(documents, (SEQ_LEN - 3) // 2)
    indices = random.Random(1).choices(range(len(chunks)), k=4000)
    batch = make_collator(chunks, next_chunk)(indices, generators(indices))
    assert batch["next_sentence_label"].shape == (4000,)
    assert (batch["labels"] != IGNORE_INDEX).any()  # the rows are masked too
    known = {tuple(c) for c in chunks}
    with_next = not_next_with_next = 0
    for i, label, (ids, types, labels) in zip(indices, batch["next_sentence_label"].tolist(), rows(batch)):
        assert len(ids) <= SEQ_LEN
        a, b = split_pair(ids, types)
        assert a == chunks[i]  # chunks of at most (SEQ_LEN - 3) // 2 tokens: nothing is truncated
        assert labels[0] == labels[len(a) + 1] == labels[-1] == IGNORE_INDEX  # [CLS] and [SEP] are never masked
        if next_chunk[i] < 0:
            assert label == NOT_NEXT  # a document's last chunk has no next one
        else:
            with_next += 1
            not_next_with_next += label == NOT_NEXT
        if label == IS_NEXT:
            assert b == chunks[next_chunk[i]]
        else:
            assert tuple(b) in known
    # where a next chunk exists, NotNext is a coin with nsp_prob = 0.5: four standard deviations
    assert abs(not_next_with_next / with_next - 0.5) < 4 * math.sqrt(0.25 / with_next)


def test_rows_depend_only_on_their_own_generator():
    chunks, next_chunk = segment_chunks(make_documents(20, seed=2), (SEQ_LEN - 3) // 2)
    collate = make_collator(chunks, next_chunk)
    indices = list(range(0, len(chunks), 3))
    batch = collate(indices, generators(indices))
    again = collate(indices, generators(indices))
    assert all(torch.equal(batch[k], again[k]) for k in batch)
    other = collate(indices, generators(indices, seed=1))
    assert not torch.equal(batch["input_ids"], other["input_ids"])
    for row, i in enumerate(indices[:5]):  # batched with others or alone: the same row
        alone = collate([i], generators([i]))
        n = alone["input_ids"].shape[1]
        assert torch.equal(batch["input_ids"][row, :n], alone["input_ids"][0])
        assert torch.equal(batch["labels"][row, :n], alone["labels"][0])
        assert batch["next_sentence_label"][row] == alone["next_sentence_label"][0]


def test_truncation_shortens_the_longer_segment_from_its_end():
    chunks, next_chunk = [list(range(10, 30)), list(range(40, 45))], [1, -1]
    batch = make_collator(chunks, next_chunk, seq_len=16, nsp_prob=0.0)([0], generators([0]))
    ((ids, types, _),) = rows(batch)
    assert split_pair(ids, types) == (list(range(10, 18)), list(range(40, 45)))
    assert len(ids) == 16 and batch["next_sentence_label"].tolist() == [IS_NEXT]


def test_without_nsp_a_row_is_one_segment():
    chunks, next_chunk = [list(range(10, 30)), list(range(40, 45))], [1, -1]
    batch = make_collator(chunks, next_chunk, seq_len=16, nsp=False)([0, 1], generators([0, 1]))
    assert "next_sentence_label" not in batch
    (ids0, types0, _), (ids1, types1, _) = rows(batch)
    assert ids0 == [CLS, *range(10, 24), SEP] and ids1 == [CLS, *range(40, 45), SEP]
    assert set(types0) == set(types1) == {0}
