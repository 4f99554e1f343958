"""Fixtures for explanation tests: a real fine-tuned MiniLM classifier and a tiny one, saved as model folders."""

from __future__ import annotations

import csv
import random

import pytest
import torch

import damoxing
from damoxing.recipes.finetune import finetune
from damoxing.tokenizer import Tokenizer

WORDS = {"pos": ["good", "great", "love", "nice"], "neg": ["bad", "awful", "hate", "broken"]}
FILLER = ["the", "phone", "it", "is", "was", "very", "this", "a", "day"]


def rows(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        words = rng.choices(FILLER, k=rng.randint(2, 6)) + rng.choices(WORDS[label], k=2)
        rng.shuffle(words)
        out.append((" ".join(words), label))
    return out


def write_csv(path, data):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(("text", "label"))
        w.writerows(data)
    return path


@pytest.fixture(scope="session")
def minilm_classifier(minilm_dir, tmp_path_factory):
    """all-MiniLM-L6-v2 with a sentiment head fine-tuned by the features method (logistic regression on the
    frozen mean-pooled body: seconds): a real trained model, saved as a fine-tuned folder."""
    folder = tmp_path_factory.mktemp("minilm-clf")
    train, valid = write_csv(folder / "train.csv", rows(120, 1)), write_csv(folder / "valid.csv", rows(40, 2))
    cfg = {
        "model": {"path": str(minilm_dir)},
        "data": {"train": [str(train)], "valid": [str(valid)], "max_length": 32},
        "finetune": {"method": "features", "pooling": "mean", "cache_dir": str(folder / "cache")},
    }
    result = finetune(cfg, folder / "run", verbose=False)
    assert result.metrics["accuracy"] > 0.9
    return result.model_dir


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory):
    """A tiny encoder (hidden 32, 2 layers) fine-tuned with the features method, and a file of its data."""
    folder = tmp_path_factory.mktemp("tiny-clf")
    corpus = folder / "corpus.txt"
    corpus.write_text(" ".join(FILLER + WORDS["pos"] + WORDS["neg"]) + "\n", encoding="utf-8")
    tok = Tokenizer.train_wordpiece([corpus], vocab_size=120, min_frequency=1, model_max_length=64)
    torch.manual_seed(0)
    model = damoxing.create_model(
        damoxing.preset("bert-tiny", vocab_size=tok.vocab_size, dim=32, layers=2, heads=2, mlp_dim=64, max_positions=64)
    )
    train, valid = write_csv(folder / "train.csv", rows(200, 1)), write_csv(folder / "valid.csv", rows(80, 2))
    cfg = {
        "data": {"train": [str(train)], "valid": [str(valid)], "max_length": 32},
        "finetune": {"method": "features", "pooling": "mean", "cache_dir": str(folder / "cache")},
    }
    result = finetune(cfg, folder / "run", model=model, tokenizer=tok, verbose=False)
    return {"model": result.model_dir, "valid": valid, "folder": folder}
