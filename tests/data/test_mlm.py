"""MLM masking: rates over >100k positions, special tokens, whole-word masking, chosen positions."""

import random

import torch

from damoxing.data import MLMCollator

PAD, CLS, SEP, MASK, UNK = 0, 1, 2, 3, 4
SPECIAL = [PAD, CLS, SEP, MASK, UNK]
VOCAB = 1000


def random_batch(rows: int, seed: int, low: int = 5, high: int = VOCAB) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(300, 512, (rows,), generator=g)
    return [[CLS, *torch.randint(low, high, (int(n) - 2,), generator=g).tolist(), SEP] for n in lengths]


def test_masking_rates_over_100k_positions():
    examples = random_batch(300, seed=0)
    collator = MLMCollator(VOCAB, MASK, PAD, SPECIAL, seed=0)
    batch = collator(examples)
    second = collator(examples)  # the generator moves on: a second call draws new masks
    ids = torch.full_like(batch["input_ids"], PAD)
    for row, ex in enumerate(examples):
        ids[row, : len(ex)] = torch.tensor(ex)
    eligible = batch["attention_mask"].bool() & (ids > UNK)
    assert int(eligible.sum()) > 100_000
    chosen = batch["labels"] != -100
    assert (chosen & ~eligible).sum() == 0  # special tokens and padding are never chosen
    rate = chosen.sum() / eligible.sum()
    assert abs(rate - 0.15) < 0.005, rate
    got = batch["input_ids"][chosen]
    n = chosen.sum()
    to_mask = (got == MASK).sum() / n
    unchanged = (got == ids[chosen]).sum() / n
    to_random = 1 - to_mask - unchanged
    assert abs(to_mask - 0.8) < 0.01 and abs(to_random - 0.1) < 0.01 and abs(unchanged - 0.1) < 0.01
    assert torch.equal(batch["labels"][chosen], ids[chosen])  # labels hold the original ids
    assert torch.equal(batch["input_ids"][~chosen], ids[~chosen])  # nothing else changes
    assert not torch.isin(batch["input_ids"][chosen & (batch["input_ids"] != MASK)], torch.tensor(SPECIAL)).any()
    assert not torch.equal(second["labels"], batch["labels"])


def test_masked_positions_index_the_chosen_tokens():
    batch = MLMCollator(VOCAB, MASK, PAD, SPECIAL, seed=1)(random_batch(4, seed=1))
    positions = batch["masked_positions"]
    assert positions.shape[1] == 2
    assert torch.equal(positions, (batch["labels"] != -100).nonzero())
    assert (batch["labels"][positions[:, 0], positions[:, 1]] != -100).all()


def test_seeded_and_dynamic_padding():
    examples = [[CLS, 10, 11, SEP], [CLS, 12, SEP]]
    a = MLMCollator(VOCAB, MASK, PAD, SPECIAL, seed=5)(examples)
    b = MLMCollator(VOCAB, MASK, PAD, SPECIAL, seed=5)(examples)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["input_ids"].shape == (2, 4)  # padded to the longest in the batch
    assert a["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    padded = MLMCollator(VOCAB, MASK, PAD, SPECIAL, pad_to_multiple_of=8)(examples)
    assert padded["input_ids"].shape == (2, 8)


def test_whole_word_masking_never_splits_a_word():
    continuation = torch.zeros(VOCAB, dtype=torch.bool)
    continuation[500:] = True  # ids 500..999 are '##' pieces
    rng = random.Random(2)
    examples, words = [], []
    for _ in range(200):
        ids, spans = [CLS], []
        while len(ids) < 500:
            pieces = [rng.randrange(5, 500)] + [rng.randrange(500, VOCAB) for _ in range(rng.randrange(4))]
            spans.append((len(ids), len(ids) + len(pieces)))
            ids += pieces
        examples.append(ids + [SEP])
        words.append(spans)
    batch = MLMCollator(VOCAB, MASK, PAD, SPECIAL, continuation=continuation, seed=3)(examples)
    chosen = batch["labels"] != -100
    masked_words = 0
    for row, spans in enumerate(words):
        for start, end in spans:
            flags = chosen[row, start:end]
            assert flags.all() or not flags.any(), (row, start, end)
            masked_words += int(flags.all())
    assert masked_words > 1000
    eligible = int(batch["attention_mask"].sum()) - 2 * len(examples)
    assert abs(int(chosen.sum()) / eligible - 0.15) < 0.01


def test_continuation_after_special_token_is_its_own_word():
    continuation = torch.zeros(VOCAB, dtype=torch.bool)
    continuation[500:] = True
    collator = MLMCollator(VOCAB, MASK, PAD, SPECIAL, continuation=continuation, mlm_probability=0.99, seed=0)
    batch = collator([[CLS, 600, 601, SEP]])
    assert batch["labels"][0, 0] == -100 and batch["labels"][0, 3] == -100
    assert (batch["labels"][0, 1:3] != -100).all()


def test_pair_examples_pass_through():
    examples = [
        {"input_ids": [CLS, 7, SEP, 8, SEP], "token_type_ids": [0, 0, 0, 1, 1], "next_sentence_label": 1},
        {
            "input_ids": [CLS, 9, SEP, 10, 11, 12, SEP],
            "token_type_ids": [0, 0, 0, 1, 1, 1, 1],
            "next_sentence_label": 0,
        },
    ]
    batch = MLMCollator(VOCAB, MASK, PAD, SPECIAL)(examples)
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1, 1]]
    assert batch["next_sentence_label"].tolist() == [1, 0]
