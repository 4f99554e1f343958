"""Fixtures for fine-tuning tests: a tiny WordPiece tokenizer, tiny models and small separable data sets.

The data is separable by construction: each class has its own keywords, mixed with shared filler words,
so a model that learns anything beats the majority-class baseline clearly.
"""

from __future__ import annotations

import csv
import random
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import damoxing
from damoxing.tokenizer import Tokenizer

KEYWORDS = {
    "sport": ["goal", "match", "team", "coach", "score"],
    "tech": ["chip", "code", "robot", "laptop", "server"],
    "food": ["bread", "soup", "apple", "cheese", "rice"],
}
FILLER = ["the", "a", "today", "people", "said", "new", "big", "very", "we", "saw", "it", "was", "and"]
TAGS = {"goal": "SPORT", "team": "SPORT", "chip": "TECH", "code": "TECH", "bread": "FOOD", "soup": "FOOD"}
PROPORTIONS = {"sport": 0.45, "tech": 0.35, "food": 0.20}  # majority baseline: 45%


def sentence(rng: random.Random, label: str) -> str:
    words = rng.choices(FILLER, k=rng.randint(3, 8)) + rng.choices(KEYWORDS[label], k=2)
    rng.shuffle(words)
    return " ".join(words)


def make_rows(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    labels = rng.choices(list(PROPORTIONS), weights=list(PROPORTIONS.values()), k=n)
    return [(sentence(rng, label), label) for label in labels]


def write_csv(path: Path, rows, header=("text", "label")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory) -> Tokenizer:
    folder = tmp_path_factory.mktemp("tok")
    corpus = folder / "corpus.txt"
    words = FILLER + [w for ws in KEYWORDS.values() for w in ws] + ["high", "low", "is", "not"]
    corpus.write_text("\n".join(" ".join(words) for _ in range(5)) + "\n", encoding="utf-8")
    return Tokenizer.train_wordpiece([corpus], vocab_size=200, min_frequency=1, model_max_length=64)


@pytest.fixture()
def make_encoder(tokenizer):
    def make(seed: int = 0):
        import torch

        torch.manual_seed(seed)
        return damoxing.create_model(
            damoxing.preset(
                "bert-tiny",
                vocab_size=tokenizer.vocab_size,
                dim=32,
                layers=2,
                heads=2,
                mlp_dim=64,
                max_positions=64,
                dropout=0.0,
                attention_dropout=0.0,
                classifier_dropout=0.0,
            )
        )

    return make


@pytest.fixture()
def make_decoder(tokenizer):
    def make(seed: int = 0):
        import torch

        torch.manual_seed(seed)
        return damoxing.create_model(
            damoxing.preset(
                "gpt-mini",
                vocab_size=tokenizer.vocab_size,
                dim=32,
                layers=2,
                heads=2,
                mlp_dim=64,
                max_positions=64,
                pad_id=tokenizer.pad_id,
            )
        )

    return make


@pytest.fixture(scope="session")
def topic_data(tmp_path_factory) -> dict:
    """train.csv (240 rows) and valid.csv (90 rows) of 3 unbalanced, keyword-separable classes."""
    folder = tmp_path_factory.mktemp("topics")
    train, valid = make_rows(240, seed=1), make_rows(90, seed=2)
    counts = {label: sum(1 for _, y in valid if y == label) for label in PROPORTIONS}
    return {
        "train": write_csv(folder / "train.csv", train),
        "valid": write_csv(folder / "valid.csv", valid),
        "majority": max(counts.values()) / len(valid),
    }


def config(data: dict, method: str, task: str = "classification", **finetune) -> dict:
    """A fine-tuning config dict for the tiny models (the caller passes model= and tokenizer=)."""
    lr = {"full": 3e-3, "head": 0.3, "lora": 2e-2}.get(method, 1e-3)
    finetune = {"pooling": "mean", **finetune}  # random tiny bodies: mean pooling carries the keywords best
    train = {"lr": lr, "epochs": 5, "batch_size": 16, "precision": "fp32", "log_every": 1000, "warmup_ratio": 0.1}
    data_section = {"train": [str(data["train"])], "valid": [str(data["valid"])], "max_length": 32}
    data_section.update(data.get("columns", {}))
    return {"data": data_section, "finetune": {"method": method, "task": task, **finetune}, "train": train}


def resumed_from_step_2(straight: Path, resume) -> dict:
    """Copy step 2 of the finished run `straight` into a new folder beside it, call `resume(folder)` (a
    fine-tuning with train.resume=auto into it), and check its step 4 equals the straight run's, bit for bit.
    Returns the straight run's step-4 weights."""
    resumed = straight.parent / "resumed"
    resumed.mkdir()
    shutil.copytree(straight / "step-000002", resumed / "step-000002")
    resume(resumed)
    a = load_file(str(straight / "step-000004" / "model.safetensors"))
    b = load_file(str(resumed / "step-000004" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    return a
