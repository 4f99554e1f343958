"""Dynamic padding for labelled data and length bucketing."""

import random

import torch

from damoxing.data import LengthBucketSampler, PaddingCollator


def test_pads_to_longest_in_batch():
    collator = PaddingCollator(pad_id=0)
    batch = collator(
        [
            {"input_ids": [5, 6, 7], "token_type_ids": [0, 0, 1], "label": 1},
            {"input_ids": [8], "token_type_ids": [0], "label": 0},
        ]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 1], [0, 0, 0]]
    assert batch["labels"].tolist() == [1, 0] and batch["labels"].dtype == torch.long


def test_token_labels_multiple_of_and_left_padding():
    batch = PaddingCollator(pad_id=0, pad_to_multiple_of=4)(
        [{"input_ids": [5, 6], "labels": [1, 2]}, {"input_ids": [7], "labels": [3]}]
    )
    assert batch["input_ids"].shape == (2, 4)
    assert batch["labels"].tolist() == [[1, 2, -100, -100], [3, -100, -100, -100]]
    left = PaddingCollator(pad_id=0, padding_side="left")([[5, 6], [7]])
    assert left["input_ids"].tolist() == [[5, 6], [0, 7]] and left["attention_mask"].tolist() == [[1, 1], [0, 1]]
    assert PaddingCollator(pad_id=0)([{"input_ids": [1], "label": 0.5}])["labels"].dtype == torch.float


def test_length_buckets_cover_every_index_and_cut_padding():
    rng = random.Random(0)
    lengths = [rng.randint(1, 500) for _ in range(1000)]
    sampler = LengthBucketSampler(lengths, batch_size=16, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert batches == list(LengthBucketSampler(lengths, batch_size=16, seed=0))
    sampler.set_epoch(1)
    assert list(sampler) != batches

    def padding(batch_list):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batch_list)

    order = list(range(1000))
    rng.shuffle(order)
    random_batches = [order[i : i + 16] for i in range(0, 1000, 16)]
    assert padding(batches) < padding(random_batches) / 5
    dropped = LengthBucketSampler(lengths, batch_size=16, drop_last=True)
    assert all(len(b) == 16 for b in dropped) and len(list(dropped)) == len(dropped)
