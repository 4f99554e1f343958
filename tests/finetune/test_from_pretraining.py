"""Fine-tuning a classifier from one's own `damoxing pretrain` masked-LM checkpoint (the tutorials' main path).

A masked-LM checkpoint (BertForMaskedLM) has no pooler; BertForSequenceClassification reads one. The sequence
head brings a fresh pooler, as transformers does, so the run saves, resumes and reloads.
"""

from __future__ import annotations

import json
import random

import torch
import yaml
from safetensors.torch import load_file

import damoxing
from damoxing.recipes.finetune import finetune
from damoxing.recipes.pretrain import pretrain
from damoxing.training.state import checkpoints

from .conftest import FILLER, KEYWORDS, config, make_rows, resumed_from_step_2, write_csv


def _pretrained(tmp_path, tokenizer):
    """A tiny BERT after 2 steps of `damoxing pretrain` with train.task masked_lm: its last checkpoint folder."""
    rng = random.Random(0)
    words = FILLER + [w for ws in KEYWORDS.values() for w in ws]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(" ".join(rng.choices(words, k=rng.randint(6, 20))) + "." for _ in range(60)))
    tokenizer.save(tmp_path / "tok")
    cfg = {
        "model": {"preset": "bert-mini", "dim": 32, "layers": 2, "heads": 2, "mlp_dim": 64, "max_positions": 64},
        "tokenizer": {"path": str(tmp_path / "tok")},
        "data": {"train": [str(corpus)], "seq_len": 32, "eval_fraction": 0.1, "text_mode": "paragraph"},
        "train": {"task": "masked_lm", "batch_size": 8, "max_steps": 2, "save_every": 2, "eval_every": 2},
    }
    cfg["train"].update(log_every=1, lr=1e-3, warmup_steps=0, plot=False, tensorboard=False)
    (tmp_path / "mlm.yaml").write_text(yaml.safe_dump(cfg))
    pretrain(tmp_path / "mlm.yaml", tmp_path / "pretrain")
    return checkpoints(tmp_path / "pretrain")[-1]


def test_a_classifier_fine_tuned_from_a_masked_lm_checkpoint_saves_resumes_and_reloads(tokenizer, tmp_path):
    folder = _pretrained(tmp_path, tokenizer)
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]
    assert not any(k.startswith("bert.pooler") for k in load_file(str(folder / "model.safetensors")))
    data = {
        "train": write_csv(tmp_path / "train.csv", make_rows(48, 1)),
        "valid": write_csv(tmp_path / "valid.csv", make_rows(12, 2)),
    }
    cfg = config(data, "full")
    del cfg["finetune"]["pooling"]  # the model's own: [CLS] through the new pooler, as BertForSequenceClassification
    cfg["model"] = {"path": str(folder)}
    cfg["train"].update(epochs=0, max_steps=4, save_every=2, keep_last=5, batch_size=8)
    result = finetune(cfg, tmp_path / "straight", verbose=False)

    # saved as BertForSequenceClassification, with the new pooler, which trains
    pretrained = damoxing.load(folder)
    reloaded = damoxing.load(result.model_dir)
    assert reloaded.config.head == "sequence" and reloaded.config.pooling == "pooler"
    assert json.loads((result.model_dir / "config.json").read_text())["architectures"] == [
        "BertForSequenceClassification"
    ]
    start = load_file(str(tmp_path / "straight" / "step-000002" / "model.safetensors"))
    assert "bert.pooler.dense.weight" in start
    assert not torch.equal(reloaded.pooler.weight, torch.as_tensor(start["bert.pooler.dense.weight"]))
    assert reloaded.embed.tokens.weight.shape == pretrained.embed.tokens.weight.shape and pretrained.pooler is None

    # the saved folder gives the fine-tuned model's outputs exactly
    batch = tokenizer(["the team saw a goal", "bread and soup today"])
    result.model.eval()
    with torch.no_grad():
        assert torch.equal(reloaded(**batch), result.model(**batch))

    # resuming from step 2 gives steps 3-4 of the run that never stopped
    resumed_from_step_2(
        tmp_path / "straight", lambda run: finetune(cfg, run, overrides=["train.resume=auto"], verbose=False)
    )


def test_lora_and_head_on_a_pooler_less_checkpoint_never_read_a_random_pooler(tokenizer, tmp_path):
    import pytest

    from damoxing.errors import ConfigError

    folder = _pretrained(tmp_path, tokenizer)
    data = {
        "train": write_csv(tmp_path / "train.csv", make_rows(48, 1)),
        "valid": write_csv(tmp_path / "valid.csv", make_rows(12, 2)),
    }
    cfg = config(data, "lora", pooling="pooler")
    cfg["model"] = {"path": str(folder)}
    cfg["train"].update(epochs=1, batch_size=8, plot=False, tensorboard=False)
    with pytest.raises(ConfigError, match="finetune.pooling: pooler reads a pooler this checkpoint does not have"):
        finetune(cfg, tmp_path / "asked", verbose=False)
    del cfg["finetune"]["pooling"]  # lora's default keeps the model's pooling: [CLS] through a pooler it lacks
    result = finetune(cfg, tmp_path / "default", verbose=False)
    assert result.model.config.pooling == "mean"  # chosen instead, and recorded in what ran
    assert yaml.safe_load((tmp_path / "default" / "config.yaml").read_text())["finetune"]["pooling"] == "mean"
