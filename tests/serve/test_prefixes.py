"""The engine's kept conversations (Prefixes): the longest match wins, kept caches never change, a continued
conversation replaces the one it continues, and both bounds (conversations, cached tokens) evict the least
recently used. Keys and values here are numbers that name their conversation and position, so copies are exact."""

from __future__ import annotations

import pytest
import torch

from damoxing.layers.attention import KVCache
from damoxing.serve.engine import Prefixes

LAYERS, HEADS, DIM = 2, 2, 3


class Model:
    def new_cache(self) -> KVCache:
        return KVCache(LAYERS)


def cache_of(tag: int, length: int) -> KVCache:
    """A batch-of-one cache whose value at position p of layer l is tag * 1000 + i * 100 + p (keys; values negated)."""
    cache = KVCache(LAYERS)
    for i, layer in enumerate(cache):
        values = tag * 1000 + i * 100 + torch.arange(length, dtype=torch.float64)
        layer.k = values[None, None, :, None].expand(1, HEADS, length, DIM).clone()
        layer.v = -layer.k
        layer.length = length
    return cache


def test_take_copies_the_longest_kept_prefix_and_leaves_the_kept_cache_alone():
    prefixes = Prefixes(Model())
    prefixes.keep([1, 2, 3, 4, 5], cache_of(1, 5))
    prefixes.keep([1, 2, 9, 9], cache_of(2, 4))
    cache, n = prefixes.take([1, 2, 3, 4, 7, 8])
    assert n == 4 and cache.length == 4
    for i, layer in enumerate(cache):
        expected = 1000 + i * 100 + torch.arange(4, dtype=torch.float64)
        assert torch.equal(layer.k[0, :, :4, 0], expected.expand(HEADS, 4))
        assert torch.equal(layer.v[0, :, :4, 0], -expected.expand(HEADS, 4))
        assert layer.capacity == 6 + 1  # room for the whole prompt: its prefill does not reallocate
    zeros = torch.zeros(1, HEADS, 2, DIM, dtype=torch.float64)
    for layer in cache:  # what the prefill of tokens 7, 8 writes
        layer.update(zeros, zeros)
    kept = next(entry for entry in prefixes.kept if entry.ids == [1, 2, 3, 4, 5])
    assert kept.cache.length == 5 and float(kept.cache[0].k[0, 0, 4, 0]) == 1004.0  # untouched


def test_the_last_prompt_token_is_never_taken_and_no_match_gives_an_empty_cache():
    prefixes = Prefixes(Model())
    prefixes.keep([1, 2, 3], cache_of(1, 3))
    assert prefixes.take([1, 2, 3])[1] == 2  # it must run to give the first logits
    cache, n = prefixes.take([5, 6])
    assert n == 0 and cache.length == 0


def test_a_continued_conversation_replaces_the_one_it_continues():
    prefixes = Prefixes(Model())
    prefixes.keep([1, 2, 3], cache_of(1, 3))  # a prompt
    prefixes.keep([1, 2, 3, 4, 5], cache_of(2, 5))  # its reply done
    assert [entry.ids for entry in prefixes.kept] == [[1, 2, 3, 4, 5]]
    prefixes.keep([9], cache_of(3, 1))
    prefixes.keep([1, 2, 3], cache_of(4, 3))  # the same prompt again: already kept, now the most recent
    assert [entry.ids for entry in prefixes.kept] == [[9], [1, 2, 3, 4, 5]]
    assert float(prefixes.kept[1].cache[0].k[0, 0, 0, 0]) == 2000.0


def test_the_least_recently_used_goes_first_under_either_bound():
    prefixes = Prefixes(Model(), entries=3, max_tokens=100)
    for tag in range(1, 5):
        prefixes.keep([tag] * 4, cache_of(tag, 4))
    assert [entry.ids[0] for entry in prefixes.kept] == [2, 3, 4]
    prefixes.take([2, 2, 2, 2, 2])  # used: now the most recent
    prefixes.keep([5] * 4, cache_of(5, 4))
    assert [entry.ids[0] for entry in prefixes.kept] == [4, 2, 5]

    prefixes = Prefixes(Model(), entries=8, max_tokens=10)
    prefixes.keep([1] * 4, cache_of(1, 4))
    prefixes.keep([2] * 4, cache_of(2, 4))
    prefixes.keep([3] * 3, cache_of(3, 3))  # 11 tokens: the first goes
    assert [entry.ids[0] for entry in prefixes.kept] == [2, 3] and prefixes.tokens == 7
    prefixes.keep([4] * 11, cache_of(4, 11))  # longer than the bound alone: nothing stays
    assert prefixes.kept == [] and prefixes.tokens == 0


def test_bad_arguments_get_one_clear_message():
    with pytest.raises(ValueError, match="holds 3 positions but 2 token ids"):
        Prefixes(Model()).keep([1, 2], cache_of(1, 3))
    with pytest.raises(ValueError, match="entries >= 1"):
        Prefixes(Model(), entries=0)
