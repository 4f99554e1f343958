"""Seeded shuffles and splits: reproducible from the seed, nothing lost or duplicated."""

from damoxing.data import buffer_shuffle, shuffled, stream_split, train_val_split


def test_buffer_shuffle_is_a_reproducible_permutation():
    first = list(buffer_shuffle(range(1000), buffer_size=100, seed=3))
    assert sorted(first) == list(range(1000))
    assert first == list(buffer_shuffle(range(1000), buffer_size=100, seed=3))
    assert first != list(buffer_shuffle(range(1000), buffer_size=100, seed=4))
    assert first != list(range(1000))


def test_buffer_shuffle_holds_only_its_buffer():
    pulled = []

    def source():
        for i in range(500):
            pulled.append(i)
            yield i

    stream = buffer_shuffle(source(), buffer_size=10, seed=0)
    next(stream)
    assert len(pulled) == 11  # ten in the buffer, one to trigger the first output


def test_train_val_split_reproducible_and_disjoint():
    items = list(range(1000))
    train, val = train_val_split(items, val_fraction=0.1, seed=7)
    assert len(val) == 100 and len(train) == 900
    assert sorted(train + val) == items
    assert (train, val) == train_val_split(items, val_fraction=0.1, seed=7)
    assert val != train_val_split(items, val_fraction=0.1, seed=8)[1]
    assert shuffled(items, 1) == shuffled(items, 1) != items


def test_stream_split_parts_partition_the_stream():
    train = list(stream_split(range(10000), "train", val_fraction=0.2, seed=1))
    val = list(stream_split(range(10000), "validation", val_fraction=0.2, seed=1))
    assert sorted(train + val) == list(range(10000))
    assert 1800 < len(val) < 2200
    assert val == list(stream_split(range(10000), "validation", val_fraction=0.2, seed=1))
