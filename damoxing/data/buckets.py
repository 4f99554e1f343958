"""Length bucketing: batches of similar lengths, so dynamic padding adds few pad tokens."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from torch.utils.data import Sampler


class LengthBucketSampler(Sampler[list[int]]):
    """A batch sampler (pass as `DataLoader(batch_sampler=...)`) grouping examples of similar length.

    Like HF's `group_by_length`: indices are shuffled, cut into pools of `batch_size * pool_batches`,
    each pool sorted by length and cut into batches, and the batches shuffled. Every index appears
    exactly once per epoch; the order depends only on `seed` and `set_epoch`.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        pool_batches: int = 50,
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.pool_size = batch_size * max(1, pool_batches)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(f"{self.seed}:{self.epoch}")
        order = list(range(len(self.lengths)))
        if self.shuffle:
            rng.shuffle(order)
        batches = []
        for start in range(0, len(order), self.pool_size):
            pool = sorted(order[start : start + self.pool_size], key=lambda i: self.lengths[i], reverse=True)
            batches += [pool[i : i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        if self.shuffle:
            rng.shuffle(batches)
        return iter(batches)

    def __len__(self) -> int:
        if self.drop_last:
            full = 0
            for start in range(0, len(self.lengths), self.pool_size):
                full += min(self.pool_size, len(self.lengths) - start) // self.batch_size
            return full
        pools = range(0, len(self.lengths), self.pool_size)
        return sum(-(-min(self.pool_size, len(self.lengths) - s) // self.batch_size) for s in pools)
