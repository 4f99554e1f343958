"""Sentence-pair classification, token classification and regression each train (the loss falls)."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

from damoxing.errors import ConfigError
from damoxing.finetune import load_finetune_config
from damoxing.io.finetuned import load_finetuned
from damoxing.recipes.evaluate import predict
from damoxing.recipes.finetune import finetune

from .conftest import FILLER, KEYWORDS, TAGS, config, resumed_from_step_2, sentence, write_csv


def pair_rows(n, seed):
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.choice(list(KEYWORDS)), rng.choice(list(KEYWORDS))
        rows.append((sentence(rng, a), sentence(rng, b), "same" if a == b else "different"))
    return rows


def token_rows(n, seed):
    rng = random.Random(seed)
    words = FILLER + [w for ws in KEYWORDS.values() for w in ws]
    return [
        {"tokens": (ws := rng.choices(words, k=rng.randint(3, 9))), "tags": [TAGS.get(w, "O") for w in ws]}
        for _ in range(n)
    ]


def score_rows(n, seed):
    """Score = 1.0 per sport keyword in the sentence, so the target is a function of the text."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        k = rng.randint(0, 3)
        words = rng.choices(FILLER, k=rng.randint(2, 5)) + rng.choices(KEYWORDS["sport"], k=k)
        rng.shuffle(words)
        rows.append((" ".join(words), str(float(k))))
    return rows


def test_sentence_pair_classification_trains(make_encoder, tokenizer, tmp_path):
    data = {
        "train": write_csv(tmp_path / "train.csv", pair_rows(300, 1), ("premise", "hypothesis", "label")),
        "valid": write_csv(tmp_path / "valid.csv", pair_rows(100, 2), ("premise", "hypothesis", "label")),
        "columns": {"text_column": "premise", "text_pair_column": "hypothesis"},
    }
    cfg = config(data, "full")
    cfg["train"].update(epochs=8, lr=3e-3)
    result = finetune(cfg, tmp_path / "run", model=make_encoder(), tokenizer=tokenizer, verbose=False)
    assert result.metrics["loss"] < 0.9 * math.log(2)  # below the uniform guess
    rows = list(predict(result.model_dir, data=data["valid"]))
    assert len(rows) == 100 and {"text_a", "text_b", "label", "probability"} <= set(rows[0])


def test_token_classification_trains(make_encoder, tokenizer, tmp_path):
    files = {}
    for split, n, seed in (("train", 200, 1), ("valid", 60, 2)):
        files[split] = tmp_path / f"{split}.jsonl"
        files[split].write_text("".join(json.dumps(r) + "\n" for r in token_rows(n, seed)))
    result = finetune(
        config(files, "full", task="token"), tmp_path / "run", model=make_encoder(), tokenizer=tokenizer, verbose=False
    )
    assert result.metrics["loss"] < 0.5 * math.log(4)  # 4 tags: O, SPORT, TECH, FOOD
    assert result.metrics["accuracy"] > 0.9
    model, _tok, meta = load_finetuned(result.model_dir)
    assert meta["task"] == "token_classification" and model.config.head == "token"
    row = next(predict(result.model_dir, texts=["we saw a goal"]))
    assert row["tokens"] == ["we", "saw", "a", "goal"] and len(row["labels"]) == 4


@pytest.mark.parametrize("method", ["full", "features"])
def test_regression_trains(method, make_encoder, tokenizer, tmp_path):
    data = {
        "train": write_csv(tmp_path / "train.csv", score_rows(300, 1), ("text", "score")),
        "valid": write_csv(tmp_path / "valid.csv", score_rows(100, 2), ("text", "score")),
        "columns": {"label_column": "score"},
    }
    cfg = config(data, method, task="regression", cache_dir=str(tmp_path / "cache"))
    cfg["train"].update(epochs=8)
    result = finetune(cfg, tmp_path / "run", model=make_encoder(), tokenizer=tokenizer, verbose=False)
    targets = torch.tensor([float(r[1]) for r in score_rows(100, 2)])
    variance = float(targets.var(unbiased=False))  # the MSE of always predicting the mean
    assert result.metrics["mse"] < 0.5 * variance
    assert result.metrics["pearson"] > 0.7
    row = next(predict(result.model_dir, texts=["goal goal goal the team"]))
    assert "score" in row and "label" not in row


def test_regression_rejects_non_numeric_scores(make_encoder, tokenizer, tmp_path):
    data = {
        "train": write_csv(tmp_path / "train.csv", [("a goal", "1.0"), ("soup", "high")], ("text", "score")),
        "valid": write_csv(tmp_path / "valid.csv", [("a goal", "1.0")], ("text", "score")),
        "columns": {"label_column": "score"},
    }
    from damoxing.errors import DataError

    with pytest.raises(DataError, match="record 2: label 'high' is not a number"):
        finetune(
            config(data, "full", task="regression"),
            tmp_path / "run",
            model=make_encoder(),
            tokenizer=tokenizer,
            verbose=False,
        )


def test_config_errors_name_the_key(topic_data):
    cfg = config(topic_data, "full")
    with pytest.raises(ConfigError, match="unknown key 'finetune.lora_rnak'.*Did you mean 'finetune.lora_rank'"):
        load_finetune_config(cfg, ["finetune.lora_rnak=4"])
    with pytest.raises(ConfigError, match="finetune.method: 'lorra' is not allowed.*'lora'"):
        load_finetune_config(cfg, ["finetune.method=lorra"])
    with pytest.raises(ConfigError, match="token"):
        load_finetune_config(cfg, ["finetune.method=features", "finetune.task=token"])
    resolved = load_finetune_config(cfg, ["--train.lr=0.5"])
    assert resolved.train.lr == 0.5 and resolved.train.task == "classification"


def test_resuming_a_token_classification_run_gives_the_same_weights(make_encoder, tokenizer, tmp_path):
    """BertForTokenClassification stores no pooler, so a checkpoint lacks the body's pooler weights: resuming from
    step 2 still gives steps 3-4 of the run that never stopped, bit for bit."""

    from safetensors.torch import load_file

    files = {}
    for split, n, seed in (("train", 48, 1), ("valid", 12, 2)):
        files[split] = tmp_path / f"{split}.jsonl"
        files[split].write_text("".join(json.dumps(r) + "\n" for r in token_rows(n, seed)))
    cfg = config(files, "full", task="token")
    cfg["train"].update(epochs=0, max_steps=4, save_every=2, keep_last=5, batch_size=8)
    finetune(cfg, tmp_path / "straight", model=make_encoder(), tokenizer=tokenizer, verbose=False)
    overrides = ["train.resume=auto"]
    a = resumed_from_step_2(
        tmp_path / "straight",
        lambda run: finetune(cfg, run, overrides, model=make_encoder(), tokenizer=tokenizer, verbose=False),
    )
    assert not any("pooler" in k for k in a)  # the case this test is about
    start = load_file(str(tmp_path / "straight" / "step-000002" / "model.safetensors"))
    assert any(not torch.equal(a[k], start[k]) for k in a)  # steps 3 and 4 did change the weights
