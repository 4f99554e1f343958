"""The loop: accumulation equals the large batch, early stopping keeps the best, optimiser groups, schedules."""

import itertools
import json

import pytest
import torch

import damoxing
from damoxing.tasks import TASKS
from damoxing.training import Batches, TrainConfig, Trainer
from damoxing.training.optim import lr_at, parameter_groups

from .tiny import HF, NO_SAVE, VOCAB, clm_source, mlm_nsp_batch, tiny_decoder, tiny_encoder

EPS64 = torch.finfo(torch.float64).eps


def _rows(batch: dict) -> list[dict]:
    return [{k: v[i] for k, v in batch.items()} for i in range(len(batch["input_ids"]))]


def _stack(examples, generators) -> dict:
    return {k: torch.stack([e[k] for e in examples]) for k in examples[0]}


def _train(model, task, source, tmp_path, **kw):
    """SGD steps in the model's own dtype: precision fp32 means no autocast, so a float64 model stays float64."""
    cfg = TrainConfig(
        task=task,
        optimizer="sgd",
        momentum=0.0,
        lr=0.5,
        weight_decay=0.0,
        clip_grad=0.0,
        schedule="constant",
        precision="fp32",
        plot=False,
        tensorboard=False,
        **kw,
    )
    dtypes = set()

    def loss(model, batch):  # the task's loss, recording the dtype of what the Trainer back-propagates
        out = TASKS.get(task).loss(model, batch)
        dtypes.update(v.dtype for v in out.losses.values())
        return out

    class Recording(type(TASKS.get(task))):
        def loss(self, model, batch):
            return loss(model, batch)

    Trainer(model, Recording(), source, cfg, tmp_path, **NO_SAVE).fit()
    assert dtypes == {torch.float64} and {p.dtype for p in model.parameters()} == {torch.float64}
    return model


@pytest.mark.parametrize("task", ["mlm_nsp", "clm"])
def test_grad_accumulation_4x4_equals_batch_16(task, tmp_path):
    make = lambda: (tiny_encoder() if task == "mlm_nsp" else tiny_decoder()).double()
    if task == "mlm_nsp":  # masked-token counts differ between micro-batches: the normaliser must be global
        rows = _rows(mlm_nsp_batch(b=32, seed=1))
        src = lambda bs: Batches(rows, _stack, bs, seed=3)
    else:
        src = lambda bs: clm_source(bs, n=32)
    big = _train(make(), task, src(16), tmp_path / "a", max_steps=2)
    acc = _train(make(), task, src(4), tmp_path / "b", max_steps=2, grad_accum=4)
    start = make()
    moved = max((p - q).abs().max().item() for p, q in zip(big.parameters(), start.parameters()))
    assert moved > 1e-3  # the steps did change the weights
    # float64 rounding: a reordered sum of n terms moves by <= n*eps*sum|terms|; n = 16*16 tokens x VOCAB classes,
    # |w| ~ 1, 2 steps: <= 2.4e-11, x10 room (the steps move weights by ~0.05; float32 alone was ~1e-8 off here)
    tol = 10 * 2 * 16 * 16 * VOCAB * EPS64
    for (name, p), q in zip(big.named_parameters(), acc.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=tol, msg=name)


def test_early_stopping_keeps_best_checkpoint(tmp_path):
    scores = iter([1.0, 2.0, 3.0, 2.5, 2.9, 5.0])
    cfg = TrainConfig(
        task="clm",
        max_steps=100,
        eval_every=2,
        patience=2,
        metric="score",
        metric_mode="max",
        keep_last=1,
        lr=1e-3,
        plot=False,
        tensorboard=False,
    )
    model = tiny_decoder()
    result = Trainer(
        model,
        "clm",
        clm_source(8),
        cfg,
        tmp_path,
        eval_data=clm_source(8, n=16),
        metrics_fn=lambda m: {"score": next(scores)},
        **HF,
    ).fit()
    assert result["stopped_early"] and result["step"] == 10
    assert result["best"]["step"] == 6 and result["best"]["value"] == 3.0
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["checkpoint"] == "step-000006"
    kept = sorted(p.name for p in tmp_path.glob("step-*"))
    assert kept == ["step-000006", "step-000010"]  # the best and the last one
    for name in kept:
        damoxing.load(tmp_path / name)  # HF layout, loadable
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "eval"] == [2, 4, 6, 8, 10]


def test_optimizer_groups_exclude_biases_norms_embeddings_and_frozen():
    model = tiny_encoder()
    model.blocks[1].attn.q.weight.requires_grad_(False)
    decay, no_decay = parameter_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    d = {names[id(p)] for p in decay["params"]}
    nd = {names[id(p)] for p in no_decay["params"]}
    assert "blocks.0.attn.q.weight" in d and "blocks.0.mlp.fc1.weight" in d
    assert "blocks.1.attn.q.weight" not in d | nd  # frozen: not optimised at all
    assert {"embed.tokens.weight", "embed.norm.weight", "blocks.0.norm1.weight", "blocks.0.attn.q.bias"} <= nd
    assert not any(n.endswith("bias") or "norm" in n for n in d)
    assert len(d) + len(nd) == sum(p.requires_grad for p in model.parameters())  # tied weight counted once


def test_schedule_shapes():
    base = {"lr": 1.0, "max_steps": 110, "warmup_steps": 10}
    lin, cos, const = (TrainConfig(schedule=s, **base) for s in ("linear", "cosine", "constant"))
    # Python floats, and these points come out exact: k / 10, 1 - 1/2, (1 + cos(pi/2)) / 2 with cos(pi/2) ~ 6e-17
    # vanishing next to 1 (below eps/2)
    assert [lr_at(s, lin) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]  # linear warm-up
    assert lr_at(10, lin) == 1.0 and lr_at(60, lin) == 0.5 and lr_at(110, lin) == 0.0
    assert lr_at(60, cos) == 0.5 and lr_at(35, cos) > lr_at(35, lin)  # cosine stays high longer
    assert lr_at(100, const) == 1.0
    for cfg in (lin, cos):
        after = [lr_at(s, cfg) for s in range(10, 111)]
        assert all(a >= b for a, b in itertools.pairwise(after))
    floor = TrainConfig(schedule="cosine", min_lr_ratio=0.1, **base)
    assert lr_at(110, floor) == 0.1  # 0.1 + 0.9 * (1 + cos(pi)) / 2, cos(pi) = -1 exactly


def test_max_minutes_stops_early_and_saves_where_it_is(tmp_path):
    cfg = TrainConfig(task="clm", max_steps=100_000, max_minutes=1e-9, lr=1e-3, plot=False, tensorboard=False)
    result = Trainer(tiny_decoder(), "clm", clm_source(8), cfg, tmp_path, eval_data=clm_source(8, n=16), **HF).fit()
    assert result["step"] == 1 and not result["stopped_early"]
    assert [p.name for p in tmp_path.glob("step-*")] == ["step-000001"]
    assert result["eval"] is not None and result["eval"]["loss"] > 0


def test_scaled_param_groups_get_lr_times_scale_after_a_step_and_after_resume(tmp_path):
    from damoxing.finetune.methods import layerwise_param_groups

    def run(max_steps, resume, keep_scale=True):
        model = tiny_decoder()
        groups = layerwise_param_groups(model, 0.1, decay=0.5, weight_decay=0.01)
        if not keep_scale:  # the scales must come back from the checkpoint
            groups = [{k: v for k, v in g.items() if k != "lr_scale"} for g in groups]
        cfg = TrainConfig(
            task="clm",
            max_steps=max_steps,
            lr=0.1,
            schedule="constant",
            weight_decay=0.01,
            plot=False,
            tensorboard=False,
        )
        trainer = Trainer(model, "clm", clm_source(8), cfg, tmp_path, param_groups=groups, **HF)
        trainer.fit(resume=resume)
        return trainer, model

    trainer, model = run(1, False)
    scales = [g["lr_scale"] for g in trainer.optimizer.param_groups]
    assert min(scales) < max(scales) == 1.0
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [0.1 * s for s in scales]  # the same product
    decay = {id(p) for p in parameter_groups(model, 0.01)[0]["params"]}  # the Trainer's decay rule holds
    for g in trainer.optimizer.param_groups:
        assert {id(p) in decay for p in g["params"]} == {g["weight_decay"] > 0}
    resumed, _ = run(2, True, keep_scale=False)
    assert resumed.step == 2
    assert [g["lr_scale"] for g in resumed.optimizer.param_groups] == scales
    assert [g["lr"] for g in resumed.optimizer.param_groups] == [0.1 * s for s in scales]
