import torch

import damoxing
from damoxing.inference import generate


def tiny_llama(vocab=50):
    """In float64: cached and full decoding differ only in summation order (~1e-16), so no near-tie of two logits
    can flip an argmax between them, as a float32 difference (~1e-7) could on some CPU."""
    torch.manual_seed(0)
    cfg = damoxing.preset("llama-tiny", vocab_size=vocab, dim=32, layers=2, heads=4, kv_heads=2, mlp_dim=64)
    return damoxing.create_model(cfg).double().eval()


def test_greedy_with_cache_equals_full_recompute():
    model = tiny_llama()
    prompt = torch.randint(0, 50, (2, 5), generator=torch.Generator().manual_seed(1))
    out = generate(model, prompt, 8)
    ref = prompt
    for _ in range(8):
        ref = torch.cat([ref, model(ref)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, ref)


def test_left_padding_decodes_each_row_as_if_alone():
    model = tiny_llama()
    short, long = torch.tensor([[7, 8, 9]]), torch.tensor([[1, 2, 3, 4, 5, 6]])
    batch = torch.tensor([[0, 0, 0, 7, 8, 9], [1, 2, 3, 4, 5, 6]])
    mask = torch.tensor([[0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    out = generate(model, batch, 5, attention_mask=mask)
    assert torch.equal(out[0, 6:], generate(model, short, 5)[0, 3:])
    assert torch.equal(out[1, 6:], generate(model, long, 5)[0, 6:])


def test_eos_stops_and_sampling_is_seeded():
    model = tiny_llama()
    prompt = torch.tensor([[1, 2, 3]])
    first = generate(model, prompt, 1)[0, -1].item()
    stopped = generate(model, prompt, 10, eos_id=first)
    assert stopped.shape[1] == 4 and stopped[0, -1].item() == first
    a = generate(model, prompt, 10, temperature=1.0, top_k=10, top_p=0.9, generator=torch.Generator().manual_seed(3))
    b = generate(model, prompt, 10, temperature=1.0, top_k=10, top_p=0.9, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_top_k_one_is_greedy():
    model = tiny_llama()
    prompt = torch.tensor([[4, 5, 6]])
    sampled = generate(model, prompt, 6, temperature=0.7, top_k=1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sampled, generate(model, prompt, 6))
