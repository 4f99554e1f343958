"""SmolLM2-135M-Instruct (Q4_1 GGUF): damoxing equals transformers on the same dequantized weights.

transformers needs ~45 s on 2 cores to read this GGUF (it parses the file twice); its reference outputs
(logits of the prompt, 32 greedy tokens) are computed live once per test session, never cached on disk.
"""

from __future__ import annotations

import copy

import pytest
import torch

import damoxing

# "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n" in SmolLM2's vocabulary
PROMPT = [1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198]
NEW_TOKENS = 32


@pytest.fixture(scope="module")
def model(smollm2_gguf):
    return damoxing.load(smollm2_gguf)


@pytest.fixture(scope="module")
def reference(smollm2_gguf):
    """transformers' logits on PROMPT and its greedy continuation."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")  # transformers needs it to read GGUF
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name, dtype=torch.float32
    ).eval()
    ids = torch.tensor([PROMPT])
    with torch.no_grad():
        logits = hf(ids).logits[0]
        out = hf.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=NEW_TOKENS,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=2,
        )
    return {"logits": logits, "tokens": out[0, len(PROMPT) :]}


def test_config_read_from_gguf_metadata(model):
    c = model.config
    assert (c.layers, c.dim, c.heads, c.kv_heads, c.mlp_dim, c.vocab_size) == (30, 576, 9, 3, 1536, 49152)
    assert c.tie_embeddings and model.head.proj.weight is model.embed.weight
    assert c.rope_base == 100000.0 and c.position == "rope" and not model.training


def test_logits_match_transformers(model, reference):
    with torch.no_grad():
        logits = model(torch.tensor([PROMPT]))[0]
        exact = copy.deepcopy(model).double()(torch.tensor([PROMPT]))[0]  # the same weights in float64
    # Both sides run these weights in float32 and each lands about `err` from the float64 logits (err: ours, measured,
    # ~9e-5 at |logits| ~ 36 after 30 layers); a different op order can at most add up two such errors; x2 for room
    err = (logits - exact).abs().max().item()
    diff = (logits - reference["logits"]).abs().max().item()
    assert diff <= 4 * err, (diff, err)


def greedy(model, prompt: list[int], steps: int) -> list[int]:
    """Minimal greedy decoding with the key/value cache: feed the prompt once, then one token at a time."""
    cache, ids, out = model.new_cache(), torch.tensor([prompt]), []
    with torch.no_grad():
        for _ in range(steps):
            ids = model(ids, cache=cache)[:, -1].argmax(-1, keepdim=True)  # (1, 1)
            out.append(ids.item())
    return out


def test_greedy_decoding_with_kv_cache_matches_transformers_generate(model, reference):
    tokens = greedy(model, PROMPT, NEW_TOKENS)
    # exact in float32: along this path the top two logits are >= 0.05 apart, ~100x the float32 error bound above
    assert tokens == reference["tokens"].tolist()
    assert len(set(tokens)) > 3  # a real continuation, not one token repeated
