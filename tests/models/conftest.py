"""Fixtures for checkpoint tests: tiny seeded `transformers` models saved as Hugging Face folders."""

from __future__ import annotations

import pytest
import torch

TINY = {"vocab_size": 96, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
EPS32 = torch.finfo(torch.float32).eps
# Outputs compared in float64 (eps 2.2e-16) differ only in summation order: <= n * eps * sum|terms| per sum, n <= 1536
# (MiniLM's MLP), 6 layers, |outputs| <= ~10: ~1e-11 at worst. 1e-9 leaves room and is far below float32 (~1e-7).
F64_TOL = 1e-9


def llama_float32_tolerance(layers: int, dim: int, length: int, outputs: torch.Tensor) -> float:
    """What transformers' Llama moves a float64 comparison by: it runs RMSNorm and rope in float32 in any dtype.

    Each of the 2 * layers + 1 norms is off by <= (dim / 2 + 3) eps32 of its output (input rounding, a float32 sum
    of dim squares, rsqrt, product); each layer's rope angles (<= length rad) rotate q and k by <= (length + 2) eps32.
    Taken relative to |outputs| (the layers do not amplify relative error here: 1e-5 bound vs ~4e-8 seen).
    """
    return ((2 * layers + 1) * (dim / 2 + 3) + layers * (length + 2)) * EPS32 * outputs.abs().max().item()


def rope_float32_tolerance(layers: int, length: int, outputs: torch.Tensor) -> float:
    """What float32 rope tables move a float64 comparison by: each layer's angles (<= length rad) rotate q and k
    by <= (length + 2) eps32 (RoFormer: transformers' table is float32, our inverse frequencies are)."""
    return layers * (length + 2) * EPS32 * outputs.abs().max().item()


def hf_roformer(transformers, cls="RoFormerForMaskedLM", **extra):
    """A seeded random RoFormer (BERT with rotary positions), LayerNorms randomised as in `hf_bert`."""
    return hf_bert(transformers, cls, config_class=transformers.RoFormerConfig, embedding_size=32, **extra)


def save_hf(model, folder):
    model.eval().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def transformers():
    return pytest.importorskip("transformers")


def hf_gpt2(transformers, cls="GPT2LMHeadModel", **extra):
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=96, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=0, **extra
    )
    return getattr(transformers, cls)(config).eval()


def hf_llama(transformers, cls="LlamaForCausalLM", **extra):
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        **TINY,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rms_norm_eps=1e-6,
        rope_theta=5000.0,
        bos_token_id=1,
        eos_token_id=2,
        **extra,
    )
    model = getattr(transformers, cls)(config).eval()
    with torch.no_grad():  # norms start at 1: make them random so a mixed-up norm shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model


def hf_bert(transformers, cls="BertForPreTraining", config_class=None, **extra):
    torch.manual_seed(0)
    config = (config_class or transformers.BertConfig)(**TINY, max_position_embeddings=64, **extra)
    model = getattr(transformers, cls)(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                p.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="session")
def gpt2_dir(transformers, tmp_path_factory):
    """A seeded random GPT2LMHeadModel saved by transformers."""
    return save_hf(hf_gpt2(transformers), tmp_path_factory.mktemp("gpt2"))


@pytest.fixture(scope="session")
def llama_dir(transformers, tmp_path_factory):
    """A seeded random LlamaForCausalLM with grouped-query attention (4 heads, 2 kv heads), untied."""
    return save_hf(hf_llama(transformers, tie_word_embeddings=False), tmp_path_factory.mktemp("llama"))
