"""Next-sentence prediction: 50/50 labels, partners, segment ids, BERT-style truncation."""
import random

import pytest

from damoxing.data import MLMCollator, NSPExampleBuilder
from damoxing.data.collators import IS_NEXT, NOT_NEXT, truncate_pair
from damoxing.errors import DataError

CLS, SEP = 1, 2


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


def split_pair(example):
    ids, types = example["input_ids"], example["token_type_ids"]
    first_sep = ids.index(SEP)
    assert ids[0] == CLS and ids[-1] == SEP
    assert types == [0] * (first_sep + 1) + [1] * (len(ids) - first_sep - 1)
    return ids[1:first_sep], ids[first_sep + 1:-1]


def test_nsp_pairs_over_10k():
    documents = make_documents(600, seed=0)
    builder = NSPExampleBuilder(documents, max_length=64, cls_id=CLS, sep_id=SEP, seed=0)
    examples = []
    epoch = 0
    while len(examples) < 10_000:
        builder.set_epoch(epoch)
        examples += list(builder)
        epoch += 1
    examples = examples[:10_000]
    not_next = sum(e["next_sentence_label"] == NOT_NEXT for e in examples) / len(examples)
    assert abs(not_next - 0.5) < 0.02, not_next
    for example in examples:
        assert len(example["input_ids"]) <= 64
        a, b = split_pair(example)
        assert a and b
        doc_a, doc_b = {t // 1000 for t in a}, {t // 1000 for t in b}
        assert len(doc_a) == 1 and len(doc_b) == 1
        # A and B are each a consecutive run of their document (truncation only trims the ends)
        assert a == list(range(a[0], a[0] + len(a))) and b == list(range(b[0], b[0] + len(b)))
        if example["next_sentence_label"] == IS_NEXT:
            assert doc_a == doc_b and a[-1] < b[0]
            if len(a) + len(b) < 61:  # untruncated: B starts right where A ends
                assert b[0] == a[-1] + 1
        else:
            assert doc_a != doc_b  # the NotNext partner is from another document


def test_reproducible_from_seed():
    documents = make_documents(20, seed=1)
    first = list(NSPExampleBuilder(documents, 32, CLS, SEP, seed=4))
    assert first == list(NSPExampleBuilder(documents, 32, CLS, SEP, seed=4))
    assert first != list(NSPExampleBuilder(documents, 32, CLS, SEP, seed=5))


def test_truncation_longest_side_first():
    rng = random.Random(0)
    a, b = list(range(10)), [100, 101, 102]
    truncate_pair(a, b, 8, rng)
    assert len(a) == 5 and b == [100, 101, 102]
    a, b = list(range(6)), list(range(100, 110))
    truncate_pair(a, b, 8, rng)
    assert len(a) == 4 and len(b) == 4
    assert a == list(range(a[0], a[0] + 4))  # trimmed only at the ends


def test_needs_two_documents():
    with pytest.raises(DataError, match="at least 2"):
        NSPExampleBuilder([[[5, 6], [7, 8]]], 32, CLS, SEP)


def test_batches_with_mlm_collator():
    examples = list(NSPExampleBuilder(make_documents(10, seed=2), 48, CLS, SEP, seed=0))[:8]
    batch = MLMCollator(vocab_size=20_000, mask_id=3, pad_id=0, special_ids=[0, 1, 2, 3], seed=0)(examples)
    assert batch["token_type_ids"].shape == batch["input_ids"].shape
    assert batch["next_sentence_label"].tolist() == [e["next_sentence_label"] for e in examples]
    assert batch["input_ids"].shape[1] == max(len(e["input_ids"]) for e in examples)
