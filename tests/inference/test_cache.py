"""The preallocated key/value cache: growth, reserve, crop and select give the same logits as no cache."""

import torch

import damoxing
from damoxing.layers import KVCache


def tiny_llama():
    torch.manual_seed(0)
    cfg = damoxing.preset("llama-tiny", vocab_size=50, dim=32, layers=2, heads=4, kv_heads=2, mlp_dim=64)
    return damoxing.create_model(cfg).eval().double()


def run(model, ids, cache, chunks):
    """Feed `ids` in chunks of the given sizes; the logits of every position, (B, T, V)."""
    out, start = [], 0
    for size in chunks:
        out.append(model(ids[:, start : start + size], cache=cache))
        start += size
    return torch.cat(out, dim=1)


def test_chunked_feeding_grows_the_buffers_and_matches_one_pass():
    model = tiny_llama()
    ids = torch.randint(0, 50, (2, 23), generator=torch.Generator().manual_seed(0))
    full = model(ids)
    cache = model.new_cache()
    chunked = run(model, ids, cache, [3, 1, 1, 9, 1, 8])
    assert cache.length == 23 and cache[0].capacity >= 23
    assert torch.allclose(chunked, full, rtol=0, atol=1e-12)


def test_reserve_allocates_once():
    model = tiny_llama()
    ids = torch.randint(0, 50, (1, 12), generator=torch.Generator().manual_seed(1))
    cache = model.new_cache()
    cache.reserve(40)
    run(model, ids, cache, [4, 1, 1])
    buffer = cache[1].k
    run(model, ids[:, 6:], cache, [1] * 6)
    assert cache[1].k is buffer and cache[1].capacity == 40 and cache.length == 12


def test_crop_forgets_the_tail():
    model = tiny_llama()
    ids = torch.randint(0, 50, (1, 15), generator=torch.Generator().manual_seed(2))
    other = torch.randint(0, 50, (1, 5), generator=torch.Generator().manual_seed(3))
    cache = model.new_cache()
    run(model, ids, cache, [15])
    cache.crop(10)  # keep 10 positions, then continue with different tokens
    assert cache.length == 10
    continued = model(other, cache=cache)
    expected = model(torch.cat([ids[:, :10], other], dim=1))[:, 10:]
    assert torch.allclose(continued, expected, rtol=0, atol=1e-12)


def test_select_reorders_rows():
    model = tiny_llama()
    ids = torch.randint(0, 50, (3, 7), generator=torch.Generator().manual_seed(4))
    nxt = torch.randint(0, 50, (4, 1), generator=torch.Generator().manual_seed(5))
    cache = KVCache(2)
    model(ids, cache=cache)
    index = torch.tensor([2, 0, 0, 1])
    cache.select(index)
    got = model(nxt, cache=cache)[:, -1]
    expected = model(torch.cat([ids[index], nxt], dim=1))[:, -1]
    assert torch.allclose(got, expected, rtol=0, atol=1e-12)
