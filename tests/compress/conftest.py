"""Tiny models for the compression tests, and a Q8_0 GGUF file written with the `gguf` package."""

from __future__ import annotations

import functools
import operator

import gguf
import numpy as np
import pytest
import torch

import damoxing

# every dimension a multiple of 32 (GGUF blocks, int4 groups) and every output a multiple of 16 (int4 kernel)
LLAMA = {"vocab_size": 96, "dim": 64, "layers": 2, "heads": 4, "kv_heads": 2, "mlp_dim": 128, "max_positions": 64}


def tiny_decoder(seed: int = 0, **changes):
    torch.manual_seed(seed)
    return damoxing.create_model(damoxing.preset("llama-tiny", **{**LLAMA, **changes})).eval()


def tiny_encoder(seed: int = 0, **changes):
    torch.manual_seed(seed)
    fields = {
        "vocab_size": 96,
        "dim": 32,
        "layers": 2,
        "heads": 4,
        "mlp_dim": 64,
        "max_positions": 64,
        "head": "sequence",
        "num_labels": 3,
    }
    return damoxing.create_model(damoxing.preset("bert-tiny", **{**fields, **changes})).eval()


def write_gguf(path, kind=gguf.GGMLQuantizationType.Q8_0, seed: int = 0):
    """A two-layer Llama GGUF file with random weights: 2-D tensors in `kind` blocks, norms in F32, tied output."""
    rng = np.random.default_rng(seed)
    c = LLAMA
    head_dim = c["dim"] // c["heads"]
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(c["layers"])
    w.add_context_length(c["max_positions"])
    w.add_embedding_length(c["dim"])
    w.add_feed_forward_length(c["mlp_dim"])
    w.add_head_count(c["heads"])
    w.add_head_count_kv(c["kv_heads"])
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    w.add_uint32("llama.vocab_size", c["vocab_size"])
    shapes = {"token_embd.weight": (c["vocab_size"], c["dim"])}
    for i in range(c["layers"]):
        shapes.update(
            {
                f"blk.{i}.attn_q.weight": (c["dim"], c["dim"]),
                f"blk.{i}.attn_k.weight": (c["kv_heads"] * head_dim, c["dim"]),
                f"blk.{i}.attn_v.weight": (c["kv_heads"] * head_dim, c["dim"]),
                f"blk.{i}.attn_output.weight": (c["dim"], c["dim"]),
                f"blk.{i}.ffn_gate.weight": (c["mlp_dim"], c["dim"]),
                f"blk.{i}.ffn_up.weight": (c["mlp_dim"], c["dim"]),
                f"blk.{i}.ffn_down.weight": (c["dim"], c["mlp_dim"]),
                f"blk.{i}.attn_norm.weight": (c["dim"],),
                f"blk.{i}.ffn_norm.weight": (c["dim"],),
            }
        )
    shapes["output_norm.weight"] = (c["dim"],)
    for name, shape in shapes.items():
        if len(shape) == 1:
            w.add_tensor(name, rng.uniform(0.5, 1.5, shape).astype(np.float32))
        else:
            data = (rng.standard_normal(shape) * 0.1).astype(np.float32)
            w.add_tensor(name, gguf.quants.quantize(data, kind), raw_dtype=kind)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="session")
def q8_gguf(tmp_path_factory):
    return write_gguf(tmp_path_factory.mktemp("gguf") / "tiny-q8_0.gguf")


@pytest.fixture(scope="session")
def classifier_dir(tmp_path_factory):
    """A tiny 4-layer BERT classifier saved as `damoxing finetune` saves one, its tokenizer, and labelled CSVs."""
    import csv
    import random

    from damoxing.io.finetuned import save_finetuned
    from damoxing.tokenizer import Tokenizer

    folder = tmp_path_factory.mktemp("classifier")
    words = {"sport": ["goal", "match", "team"], "tech": ["chip", "code", "robot"], "food": ["bread", "soup", "rice"]}
    filler = ["the", "a", "today", "people", "said", "new", "big"]
    corpus = folder / "corpus.txt"
    corpus.write_text(
        "\n".join(" ".join(filler + functools.reduce(operator.iadd, words.values(), [])) for _ in range(5)) + "\n"
    )
    tokenizer = Tokenizer.train_wordpiece([corpus], vocab_size=120, min_frequency=1, model_max_length=64)
    rng = random.Random(0)
    for split, n in (("train", 48), ("test", 24)):
        with open(folder / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            for _ in range(n):
                label = rng.choice(sorted(words))
                writer.writerow([" ".join(rng.choices(filler, k=4) + rng.choices(words[label], k=2)), label])
    model = tiny_encoder(vocab_size=tokenizer.vocab_size, layers=4)
    model.labels = sorted(words)
    meta = {
        "task": "classification",
        "method": "full",
        "max_length": 32,
        "labels": model.labels,
        "text_column": "text",
        "text_pair_column": "",
        "label_column": "label",
    }
    save_finetuned(model, tokenizer, folder / "model", meta)
    return folder
