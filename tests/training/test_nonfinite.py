"""Non-finite numbers: stop with a message naming the step, or skip; fp16 overflows are skipped by design;
non-finite weights are never saved and a non-finite evaluation is never the best."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from damoxing.errors import UserError
from damoxing.tasks import CausalLM
from damoxing.training import TrainConfig, Trainer

from .tiny import HF, NO_SAVE, clm_source, tiny_decoder


class NaNLossAt(CausalLM):
    """The causal-LM task, with a NaN loss on the given (1-based) training steps."""

    def __init__(self, steps: set[int]):
        self.steps, self.calls = steps, 0

    def loss(self, model, batch):
        out = super().loss(model, batch)
        self.calls += 1
        if self.calls in self.steps:
            out.losses = {k: v * math.nan for k, v in out.losses.items()}
        return out


def _config(**kw) -> TrainConfig:
    base = {
        "task": "clm",
        "max_steps": 4,
        "batch_size": 8,
        "optimizer": "sgd",
        "momentum": 0.0,
        "lr": 0.1,
        "weight_decay": 0.0,
        "schedule": "constant",
        "log_every": 1,
        "plot": False,
        "tensorboard": False,
        "precision": "fp32",
    }
    return TrainConfig(**{**base, **kw})


def _records(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_non_finite_loss_stops_the_run_naming_the_step(tmp_path):
    trainer = Trainer(tiny_decoder(), NaNLossAt({3}), clm_source(8), _config(save_every=1), tmp_path, **HF)
    with pytest.raises(UserError, match=r"non-finite loss \(nan\) at step 3; stopped .*train.nonfinite: stop"):
        trainer.fit()
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-000001", "step-000002"]
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())  # the NaN never reached the weights


def test_skip_leaves_the_weights_untouched_and_counts_the_skipped_step(tmp_path):
    cfg = _config(nonfinite="skip", save_every=1, keep_last=4)
    result = Trainer(tiny_decoder(), NaNLossAt({3}), clm_source(8), cfg, tmp_path, **HF).fit()
    assert result["step"] == 4
    weights = [load_file(tmp_path / f"step-00000{i}" / "model.safetensors") for i in (2, 3, 4)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])  # step 3 was skipped
    assert not all(torch.equal(weights[1][k], weights[2][k]) for k in weights[1])  # step 4 was not
    skipped = {r["step"]: r.get("skipped_steps", 0) for r in _records(tmp_path) if r["split"] == "train"}
    assert skipped == {1: 0, 2: 0, 3: 1, 4: 0}


def test_skip_stops_after_max_skipped_steps_in_a_row(tmp_path):
    cfg = _config(nonfinite="skip", max_skipped_steps=2, max_steps=6)
    with pytest.raises(UserError, match=r"2 steps in a row skipped .* the last at step 3"):
        Trainer(tiny_decoder(), NaNLossAt({2, 3, 4}), clm_source(8), cfg, tmp_path, **NO_SAVE).fit()


def test_fp16_overflows_are_skipped_by_design_until_too_many_in_a_row(tmp_path):
    # a loss scale of 2**20 overflows fp16 gradients: the GradScaler skips those steps and halves the scale
    trainer = Trainer(
        tiny_decoder(), "clm", clm_source(8), _config(precision="fp16", max_steps=6), tmp_path / "a", **NO_SAVE
    )
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**20)
    assert trainer.fit()["step"] == 6  # train.nonfinite: stop does not stop on an fp16 overflow
    assert sum(r.get("skipped_steps", 0) for r in _records(tmp_path / "a") if r["split"] == "train") >= 1
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    # 2**40 needs about 20 halvings: five in a row is too many
    trainer = Trainer(
        tiny_decoder(),
        "clm",
        clm_source(8),
        _config(precision="fp16", max_skipped_steps=5, max_steps=8),
        tmp_path / "b",
        **NO_SAVE,
    )
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40)
    with pytest.raises(UserError, match=r"5 steps in a row skipped under fp16 .* the last at step 5"):
        trainer.fit()


def test_non_finite_weights_are_never_saved(tmp_path):
    def poison(model):  # the evaluation runs just before the checkpoint of its step
        model.blocks[0].mlp.fc1.weight.data[0, 0] = math.inf
        return {"score": 1.0}

    trainer = Trainer(
        tiny_decoder(),
        "clm",
        clm_source(8),
        _config(eval_every=2, metric="score", metric_mode="max"),
        tmp_path,
        eval_data=clm_source(8, n=8),
        metrics_fn=poison,
        **HF,
    )
    with pytest.raises(UserError, match="non-finite values after step 2, so no checkpoint was saved"):
        trainer.fit()
    assert list(tmp_path.glob("step-*")) == [] and not (tmp_path / "best.json").exists()


def test_a_non_finite_evaluation_is_never_the_best(tmp_path):
    scores = iter([math.nan, 2.0, math.nan, math.inf])
    cfg = _config(eval_every=1, metric="score", metric_mode="max", keep_last=1)
    result = Trainer(
        tiny_decoder(),
        "clm",
        clm_source(8),
        cfg,
        tmp_path,
        eval_data=clm_source(8, n=8),
        metrics_fn=lambda m: {"score": next(scores)},
        **HF,
    ).fit()
    assert result["best"]["step"] == 2 and result["best"]["value"] == 2.0
    text = (tmp_path / "best.json").read_text()
    assert json.loads(text)["checkpoint"] == "step-000002" and "NaN" not in text and "Infinity" not in text
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-000002", "step-000004"]
