"""damoxing's models give the outputs of `transformers` on the same weights."""

from __future__ import annotations

import pytest
import torch

import damoxing

from .conftest import F64_TOL, llama_float32_tolerance

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A short one.",
    "今天天气很好，我们去公园散步吧。",
    "机器学习",
]


@pytest.fixture(scope="module")
def minilm(minilm_dir, transformers):
    ours = damoxing.load(minilm_dir).double()  # float64: the two implementations differ only in summation order
    theirs = transformers.AutoModel.from_pretrained(str(minilm_dir)).eval().double()
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(minilm_dir))
    return ours, theirs, hf_tok


def mean_pool(hidden, mask):
    m = mask[..., None].to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1)


def test_minilm_token_ids_match_transformers(minilm, minilm_dir):
    _, _, hf_tok = minilm
    tok = damoxing.load_tokenizer(minilm_dir)
    for text in SENTENCES:
        assert tok.encode(text) == hf_tok(text)["input_ids"]


def test_minilm_hidden_states_and_sentence_embeddings_match_transformers(minilm):
    ours, theirs, hf_tok = minilm
    assert type(ours).__name__ == "Encoder" and not ours.training
    batch = hf_tok(SENTENCES, padding=True, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any()  # the batch really is padded
    with torch.no_grad():
        hidden = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        expected = theirs(**batch).last_hidden_state
    real = batch["attention_mask"].bool()
    diff = (hidden - expected)[real].abs().max().item()
    assert diff <= F64_TOL, diff
    emb_diff = (mean_pool(hidden, batch["attention_mask"]) - mean_pool(expected, batch["attention_mask"])).abs().max()
    assert emb_diff <= F64_TOL, emb_diff
    # the pooler (dense + tanh over [CLS]) matches too
    assert (ours.pool(hidden) - theirs(**batch).pooler_output).abs().max() <= F64_TOL


def test_gpt2_logits_match_transformers(gpt2_dir, transformers):
    ours = damoxing.load(gpt2_dir).double()  # float64: only summation order differs
    theirs = transformers.AutoModelForCausalLM.from_pretrained(str(gpt2_dir)).eval().double()
    ids = torch.randint(0, 96, (2, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (ours(ids) - theirs(ids).logits).abs().max().item()
        assert diff <= F64_TOL, diff
        cache, steps = ours.new_cache(), []
        for t in range(ids.shape[1]):
            steps.append(ours(ids[:, t : t + 1], cache=cache))
        assert (torch.cat(steps, 1) - ours(ids)).abs().max() <= F64_TOL


def test_llama_with_grouped_query_attention_matches_transformers(llama_dir, transformers):
    ours = damoxing.load(llama_dir).double()  # float64, but transformers keeps RMSNorm and rope in float32
    assert ours.config.kv_heads == 2 and ours.config.rope_base == 5000.0 and not ours.config.tie_embeddings
    theirs = transformers.AutoModelForCausalLM.from_pretrained(str(llama_dir)).eval().double()
    ids = torch.randint(0, 96, (2, 20), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, :5] = 0  # left padding
    with torch.no_grad():
        logits = ours(ids)
        tol = llama_float32_tolerance(ours.config.layers, ours.config.dim, ids.shape[1], logits)
        diff = (logits - theirs(ids).logits).abs().max().item()
        assert diff <= tol, (diff, tol)
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        padded = ours(ids, mask, position_ids=positions)
        expected = theirs(ids, attention_mask=mask, position_ids=positions).logits
        assert (padded - expected)[mask.bool()].abs().max() <= tol
