"""Batch sources: a seeded order per epoch, ranks that share nothing, and a start anywhere (exact resume)."""

import torch

from damoxing.training import Batches


def items(examples, generators) -> list[tuple[int, float]]:
    """A 'collate' that keeps each example with the first draw of its generator."""
    return [(e, torch.rand((), generator=g).item()) for e, g in zip(examples, generators)]


def flat(batches) -> list:
    return [item for batch in batches for item in batch]


def test_each_epoch_is_a_seeded_permutation():
    source = Batches(list(range(200)), items, batch_size=16, seed=0, drop_last=False)
    epoch0 = flat(source.batches(0))
    assert sorted(e for e, _ in epoch0) == list(range(200))
    assert epoch0 == flat(source.batches(0))
    assert [e for e, _ in flat(source.batches(1))] != [e for e, _ in epoch0]
    assert len(source) == 13 and [len(b) for b in source.batches(0)] == [16] * 12 + [8]


def test_ranks_split_each_step_without_overlap():
    examples = list(range(96))
    alone = list(Batches(examples, items, batch_size=16, seed=3).batches(2))
    ranks = [list(Batches(examples, items, batch_size=8, seed=3, rank=r, world=2).batches(2)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(alone) == 6
    for step, batch in enumerate(alone):  # 2 ranks x 8 see the examples, and the draws, of 1 x 16
        shared = ranks[0][step] + ranks[1][step]
        assert sorted(shared) == sorted(batch)
        assert not {e for e, _ in ranks[0][step]} & {e for e, _ in ranks[1][step]}


def test_starting_at_a_batch_gives_the_rest_of_the_epoch():
    source = Batches(list(range(100)), items, batch_size=10, seed=1)
    assert list(source.batches(4, start=6)) == list(source.batches(4))[6:]
