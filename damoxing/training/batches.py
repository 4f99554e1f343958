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

from collections.abc import Callable, Iterator, Sequence

import torch

from ..data.buckets import LengthBucketSampler
from ..data.collators import packed_tokens, padded_tokens


def example_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_000_003 + index)


class Batches:
    """Batches of `examples` collated by `collate(examples, generators) -> dict of tensors`."""

    def __init__(
        self,
        examples: Sequence,
        collate: Callable,
        batch_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
        rank: int = 0,
        world: int = 1,
    ):
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
            chunk = order[i * per_step : (i + 1) * per_step]
            mine = chunk[self.rank :: self.world].tolist()  # rank r takes every world-th example of the step
            if not mine:
                continue
            yield self.collate([self.examples[j] for j in mine], [example_generator(self.seed, epoch, j) for j in mine])


class LengthGroupedBatches:
    """A Trainer batch source whose batches hold examples of similar length (HF's `group_by_length`).

    The order comes from `LengthBucketSampler` (shuffled pools of 50 batches, each sorted by length), so
    dynamic padding adds few pad tokens; it depends only on (seed, epoch), which keeps resume exact.
    """

    def __init__(self, examples: list[dict], collate, batch_size: int, seed: int = 0):
        self.examples, self.collate = examples, collate
        self.sampler = LengthBucketSampler([len(e["input_ids"]) for e in examples], batch_size, seed=seed)

    def __len__(self) -> int:
        return len(self.sampler)

    def batches(self, epoch: int, start: int = 0):
        self.sampler.set_epoch(epoch)
        for i, index in enumerate(self.sampler):
            if i >= start:
                yield self.collate([self.examples[j] for j in index], None)


SAVING = 0.2  # `auto` packs or groups by length when that computes more than this fraction fewer positions


def choose_layout(
    lengths: Sequence[int],
    batch_size: int,
    capacity: int,
    packing: bool | str = "auto",
    group_by_length: bool | str = "auto",
    can_pack: bool = True,
    seed: int = 0,
) -> tuple[str, dict[str, int]]:
    """How to lay out training batches of examples of `lengths`: "packed", "grouped" or "plain", and the positions
    each layout computes in the first epoch ({"plain": .., "packed": .., "grouped": ..}).

    "plain" is random batches with dynamic padding (each padded to its longest, as the HF Trainer does);
    "packed" the same batches packed into rows of `capacity` tokens; "grouped" batches of similar lengths.
    `auto` packs when the task and model can and packing saves more than SAVING of the plain positions; otherwise
    it groups by length when that saves as much. Short, variable-length text is packed; text that fills
    max_length is neither (there is nothing to save)."""
    order = Batches(range(len(lengths)), None, batch_size, seed=seed, drop_last=False).order(0).tolist()
    plain = [[lengths[i] for i in order[s : s + batch_size]] for s in range(0, len(order), batch_size)]
    grouped = [[lengths[i] for i in b] for b in LengthBucketSampler(lengths, batch_size, seed=seed)]
    cost = {
        "plain": sum(padded_tokens(b) for b in plain),
        "packed": sum(packed_tokens(b, capacity) for b in plain),
        "grouped": sum(padded_tokens(b) for b in grouped),
    }
    pays = lambda layout: cost[layout] < (1 - SAVING) * cost["plain"]
    if packing is True:
        return "packed", cost
    if group_by_length is True:  # asked for: auto packing does not override it
        return "grouped", cost
    if packing == "auto" and can_pack and pays("packed"):
        return "packed", cost
    if group_by_length == "auto" and pays("grouped"):
        return "grouped", cost
    return "plain", cost
