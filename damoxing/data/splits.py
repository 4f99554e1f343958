"""Seeded shuffling and train/validation splits, for in-memory lists and for streams.

Everything here is reproducible from its seed: the same data and seed give the same order and split.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

import torch

T = TypeVar("T")


def shuffled(items: Sequence[T], seed: int) -> list[T]:
    """A seeded permutation of an in-memory sequence."""
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    return [items[i] for i in order]


def buffer_shuffle(items: Iterable[T], buffer_size: int, seed: int | str) -> Iterator[T]:
    """Shuffle a stream with a fixed-size buffer (like `datasets.IterableDataset.shuffle`).

    The first `buffer_size` items fill the buffer; then each new item replaces a random slot whose old
    item is yielded. Memory is `buffer_size` items; a bigger buffer mixes more.
    """
    if buffer_size < 1:
        raise ValueError("buffer_size must be at least 1")
    rng = random.Random(seed)
    buffer: list[T] = []
    for item in items:
        if len(buffer) < buffer_size:
            buffer.append(item)
            continue
        slot = rng.randrange(buffer_size)
        yield buffer[slot]
        buffer[slot] = item
    rng.shuffle(buffer)
    yield from buffer


def train_val_split(items: Sequence[T], val_fraction: float = 0.1, seed: int = 0) -> tuple[list[T], list[T]]:
    """Split an in-memory sequence into (train, validation) by a seeded permutation.

    The validation part has `round(len * val_fraction)` items (at least 1 when the fraction is > 0).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError("val_fraction must be in [0, 1)")
    items = shuffled(items, seed)
    n_val = max(1, round(len(items) * val_fraction)) if val_fraction > 0 and len(items) > 1 else 0
    return items[n_val:], items[:n_val]


def in_validation(index: int, val_fraction: float, seed: int) -> bool:
    """Whether item number `index` of a stream belongs to the validation part: a seeded hash, no state."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64 < val_fraction


def stream_split(items: Iterable[T], part: str, val_fraction: float = 0.1, seed: int = 0) -> Iterator[T]:
    """One part ("train" or "validation") of a stream split; the two parts never share an item.

    Each item goes to validation with probability `val_fraction`, decided by a seeded hash of its
    position, so both parts can be read lazily and independently and are the same on every pass.
    """
    if part not in ("train", "validation"):
        raise ValueError('part must be "train" or "validation"')
    want_val = part == "validation"
    for index, item in enumerate(items):
        if in_validation(index, val_fraction, seed) == want_val:
            yield item


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU `torch.Generator` seeded with `seed` (collators draw all their randomness from one)."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator
