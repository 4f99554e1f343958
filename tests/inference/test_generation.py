"""Greedy and sampled decoding on a tiny random Llama: cache, left padding, per-row stops, seeds, filters."""

import math

import pytest
import torch

import damoxing
from damoxing.errors import ConfigError
from damoxing.inference import GenerationConfig, generate, generate_stream
from damoxing.inference.sampling import min_p_filter, pick, top_k_filter, top_p_filter


def tiny_llama(vocab=50):
    """In float64: cached and full decoding differ only in summation order (~1e-16), so no near-tie of two logits
    can flip an argmax between them, as a float32 difference (~1e-7) could on some CPU."""
    torch.manual_seed(0)
    cfg = damoxing.preset("llama-tiny", vocab_size=vocab, dim=32, layers=2, heads=4, kv_heads=2, mlp_dim=64)
    return damoxing.create_model(cfg).double().eval()


def greedy(n, **options):
    return GenerationConfig(max_new_tokens=n, **options)


def test_greedy_with_cache_equals_full_recompute():
    model = tiny_llama()
    prompt = torch.randint(0, 50, (2, 5), generator=torch.Generator().manual_seed(1))
    out = generate(model, prompt, greedy(8))
    ref = prompt
    for _ in range(8):
        ref = torch.cat([ref, model(ref)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, ref)


def test_left_padding_decodes_each_row_as_if_alone():
    model = tiny_llama().double()  # float64: the padded batch and the single rows agree to the last bit that matters
    short, long = torch.tensor([[7, 8, 9]]), torch.tensor([[1, 2, 3, 4, 5, 6]])
    batch = torch.tensor([[0, 0, 0, 7, 8, 9], [1, 2, 3, 4, 5, 6]])
    mask = torch.tensor([[0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    out = generate(model, batch, greedy(5), attention_mask=mask)
    assert torch.equal(out[0, 6:], generate(model, short, greedy(5))[0, 3:])
    assert torch.equal(out[1, 6:], generate(model, long, greedy(5))[0, 6:])


def test_each_row_stops_on_its_own():
    model = tiny_llama().double()
    batch = torch.tensor([[0, 0, 0, 7, 8, 9], [1, 2, 3, 4, 5, 6]])
    mask = torch.tensor([[0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    free = generate(model, batch, greedy(6), attention_mask=mask)
    row0, row1 = free[0, 6:].tolist(), free[1, 6:].tolist()
    # row 0 stops at its first token that row 1 never produces
    j = next(j for j, t in enumerate(row0) if t not in row1)
    steps = list(generate_stream(model, batch, greedy(6, stop_token_ids=(row0[j],), pad_token_id=49), mask))
    tokens = torch.stack([s.tokens for s in steps], dim=1)
    assert tokens[0].tolist() == row0[: j + 1] + [49] * (5 - j)  # stopped after its stop token, then padding
    assert tokens[1].tolist() == row1  # the other row ran to max_new_tokens, unaffected
    assert [s.active[0].item() for s in steps] == [True] * (j + 1) + [False] * (5 - j)
    assert steps[j].finished.tolist() == [True, False] and len(steps) == 6


def test_all_rows_stopped_ends_early():
    model = tiny_llama()
    prompt = torch.tensor([[1, 2, 3]])
    first = generate(model, prompt, greedy(1))[0, -1].item()
    stopped = generate(model, prompt, greedy(10, stop_token_ids=(first,)))
    assert stopped.shape[1] == 4 and stopped[0, -1].item() == first


def test_min_new_tokens_bans_stop_tokens():
    model = tiny_llama()
    prompt = torch.tensor([[1, 2, 3]])
    first = generate(model, prompt, greedy(1))[0, -1].item()
    out = generate(model, prompt, greedy(10, stop_token_ids=(first,), min_new_tokens=4))
    assert first not in out[0, 3:7].tolist() and out.shape[1] >= 7


def test_sampling_is_reproducible_with_a_seed():
    model = tiny_llama()
    prompt = torch.tensor([[1, 2, 3]])
    config = GenerationConfig(max_new_tokens=10, temperature=1.0, top_k=10, top_p=0.9, min_p=0.05, seed=3)
    a, b = generate(model, prompt, config), generate(model, prompt, config)
    assert torch.equal(a, b)
    others = {
        tuple(generate(model, prompt, GenerationConfig(max_new_tokens=10, temperature=1.0, seed=s))[0].tolist())
        for s in range(5)
    }
    assert len(others) > 1  # the seed matters


def test_top_k_one_is_greedy():
    model = tiny_llama()
    prompt = torch.tensor([[4, 5, 6]])
    sampled = generate(model, prompt, GenerationConfig(max_new_tokens=6, temperature=0.7, top_k=1, seed=0))
    assert torch.equal(sampled, generate(model, prompt, greedy(6)))


def test_logprobs_report_the_chosen_and_top_tokens():
    model = tiny_llama()
    prompt = torch.tensor([[4, 5, 6]])
    step = next(generate_stream(model, prompt, greedy(1, logprobs=3)))
    expected = model(prompt)[0, -1].float().log_softmax(-1)
    assert step.top_ids[0, 0] == step.tokens[0]  # greedy: the chosen token is the most probable
    assert torch.allclose(step.top_logprobs[0], expected.topk(3).values, atol=1e-5)
    assert step.logprobs[0] == step.top_logprobs[0, 0]


# ---- the sampling filters against their definitions, in float64 on random logits
def probabilities(n=200, seed=0):
    logits = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3
    return logits, logits.softmax(-1)


@pytest.mark.parametrize("k", [1, 7, 200])
def test_top_k_keeps_the_k_most_probable(k):
    logits, probs = probabilities()
    kept = top_k_filter(logits[None], k)[0].isfinite()
    assert set(kept.nonzero()[:, 0].tolist()) == set(probs.argsort(descending=True)[:k].tolist())


@pytest.mark.parametrize("p", [0.05, 0.5, 0.9, 0.999])
def test_top_p_keeps_the_fewest_tokens_reaching_p(p):
    logits, probs = probabilities(seed=1)
    order = probs.argsort(descending=True).tolist()
    mass, expected = 0.0, set()
    for i in order:  # the definition: add the most probable tokens until their mass reaches p
        expected.add(i)
        mass += probs[i].item()
        if mass >= p:
            break
    kept = top_p_filter(logits[None], p)[0].isfinite()
    assert set(kept.nonzero()[:, 0].tolist()) == expected


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 1.0])
def test_min_p_keeps_tokens_at_least_p_times_the_best(p):
    logits, probs = probabilities(seed=2)
    kept = min_p_filter(logits[None], p)[0].isfinite()
    expected = {i for i in range(len(probs)) if probs[i] >= p * probs.max()}
    assert set(kept.nonzero()[:, 0].tolist()) == expected and len(expected) >= 1


def test_filtered_sampling_draws_only_kept_tokens():
    logits, _ = probabilities(seed=3)
    config = GenerationConfig(temperature=1.0, top_p=0.5)
    kept = set(top_p_filter(logits[None].float(), 0.5)[0].isfinite().nonzero()[:, 0].tolist())
    draws = pick(logits[None].float().expand(2000, -1), config, torch.Generator().manual_seed(0))
    assert set(draws.tolist()) <= kept and len(set(draws.tolist())) == len(kept)


# ---- config validation
@pytest.mark.parametrize(
    "changes, key",
    [
        ({"max_new_tokens": 0}, "generation.max_new_tokens"),
        ({"top_p": 0.0}, "generation.top_p"),
        ({"top_k": 2.5}, "generation.top_k"),
        ({"temperature": -1.0}, "generation.temperature"),
        ({"early_stopping": "sometimes"}, "generation.early_stopping"),
        ({"min_p": 2.0}, "generation.min_p"),
        ({"min_new_tokens": 9, "max_new_tokens": 8}, "generation.min_new_tokens"),
        ({"stop_strings": ("",)}, "generation.stop_strings"),
        ({"repetition_penalty": 0.0}, "generation.repetition_penalty"),
    ],
)
def test_bad_settings_name_the_key(changes, key):
    with pytest.raises(ConfigError, match=key):
        GenerationConfig(**changes)


def test_lists_become_tuples():
    config = GenerationConfig(stop_token_ids=[2, 3], stop_strings="###")
    assert config.stop_token_ids == (2, 3) and config.stop_strings == ("###",) and hash(config)
    assert math.isclose(GenerationConfig().top_p, 1.0)


def test_a_bare_token_count_is_refused_with_a_hint():
    with pytest.raises(ConfigError, match="GenerationConfig"):
        generate(tiny_llama(), torch.tensor([[1, 2]]), 8)
