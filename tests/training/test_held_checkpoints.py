"""train.save_minutes: the checkpoint of an evaluation that improved is held in memory and written once, with its
own step's weights; a checkpoint due by the clock, save_every or the end is written at once."""

import time

import pytest
import torch

import damoxing
from damoxing.training import TrainConfig, Trainer, state

from .tiny import HF, clm_source, tiny_decoder


def _run(tmp_path, monkeypatch, scores, sleep_at=None, **kw):
    """A 6-step run evaluated at steps 2, 4, 6 whose metric is `scores`; returns (steps written in order, the
    weights at each evaluation, the result)."""
    written, weights, scores = [], {}, iter(scores)
    real = state.save_checkpoint

    def spy(run_dir, step, *args, **kwargs):
        written.append(step)
        return real(run_dir, step, *args, **kwargs)

    monkeypatch.setattr(state, "save_checkpoint", spy)

    def metrics(model):
        weights[2 * (len(weights) + 1)] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if sleep_at == 2 * len(weights):
            time.sleep(kw["save_minutes"] * 60 * 1.5)
        return {"score": next(scores)}

    cfg = TrainConfig(
        task="clm",
        max_steps=6,
        eval_every=2,
        metric="score",
        metric_mode="max",
        keep_last=5,
        lr=1e-2,
        plot=False,
        tensorboard=False,
        **kw,
    )
    result = Trainer(
        tiny_decoder(), "clm", clm_source(8), cfg, tmp_path, eval_data=clm_source(8, n=16), metrics_fn=metrics, **HF
    ).fit()
    return written, weights, result


def _assert_holds(folder, weights):
    loaded = damoxing.load(folder).state_dict()
    assert set(loaded) == set(weights)
    for k, v in weights.items():
        assert torch.equal(loaded[k], v), k


def test_improving_evaluations_are_written_once_at_the_end(tmp_path, monkeypatch):
    written, weights, result = _run(tmp_path, monkeypatch, [1.0, 2.0, 3.0])
    assert written == [6]  # steps 2 and 4 were held, then superseded
    assert state.best_checkpoint(tmp_path).name == "step-000006" and result["best"]["step"] == 6
    _assert_holds(tmp_path / "step-000006", weights[6])


def test_a_best_before_the_end_is_written_with_its_own_weights(tmp_path, monkeypatch):
    written, weights, result = _run(tmp_path, monkeypatch, [1.0, 3.0, 2.0])
    assert written == [4, 6]  # the held best, then the last step (the resume point)
    assert state.best_checkpoint(tmp_path).name == "step-000004" and result["best"]["step"] == 4
    _assert_holds(tmp_path / "step-000004", weights[4])
    _assert_holds(tmp_path / "step-000006", weights[6])
    assert any(not torch.equal(weights[4][k], weights[6][k]) for k in weights[4])  # the steps did move them
    # the held checkpoint resumes like any other: its training state is that of step 4
    assert state.load_training_state(tmp_path / "step-000004")["step"] == 4


def test_save_minutes_zero_writes_each_improvement_at_once(tmp_path, monkeypatch):
    written, _, _ = _run(tmp_path, monkeypatch, [1.0, 2.0, 3.0], save_minutes=0.0)
    assert written == [2, 4, 6]


def test_a_held_checkpoint_is_written_when_its_time_is_up(tmp_path, monkeypatch):
    scores = [1.0, 0.5, 3.0]  # step 2 is held; step 4 is worse; step 6 is the best and the end
    assert _run(tmp_path / "quick", monkeypatch, scores, save_minutes=0.05)[0] == [6]
    # the evaluation at step 4 outlasts save_minutes (3 s): the checkpoint held since step 2 is written then
    assert _run(tmp_path / "slow", monkeypatch, scores, sleep_at=4, save_minutes=0.05)[0] == [2, 6]


@pytest.mark.parametrize("bad", [-1.0])
def test_save_minutes_is_checked(bad):
    with pytest.raises(Exception, match="train.save_minutes"):
        TrainConfig(save_minutes=bad)
