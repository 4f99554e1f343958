"""Ctrl-C: the step finishes, a checkpoint is saved, the message says where; resuming loses nothing."""

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from damoxing.cli import main
from damoxing.tokenizer import Tokenizer
from damoxing.training import TrainConfig, Trainer
from damoxing.training.trainer import Interrupted

from .tiny import HF, clm_source, tiny_decoder


class CtrlCAt:
    """A batch source that sends this process SIGINT (Ctrl-C) `times` times as it yields micro-batch `at`."""

    def __init__(self, source, at: int, times: int = 1):
        self.source, self.at, self.times, self.given = source, at, times, 0

    def __len__(self):
        return len(self.source)

    def batches(self, epoch, start=0):
        for batch in self.source.batches(epoch, start):
            self.given += 1
            if self.given == self.at:
                for _ in range(self.times):
                    os.kill(os.getpid(), signal.SIGINT)
            yield batch


def _trainer(run, source) -> Trainer:
    cfg = TrainConfig(
        task="clm", max_steps=6, batch_size=8, lr=1e-2, log_every=1, plot=False, tensorboard=False, precision="fp32"
    )
    return Trainer(tiny_decoder(), "clm", source, cfg, run, **HF)


def test_ctrl_c_saves_the_step_and_resuming_gives_the_same_weights(tmp_path):
    _trainer(tmp_path / "straight", clm_source(8)).fit()
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(Interrupted, match=r"interrupted at step 3; saved .*step-000003"):
        _trainer(tmp_path / "run", CtrlCAt(clm_source(8), at=3)).fit()  # the third step finishes first
    assert [p.name for p in (tmp_path / "run").glob("step-*")] == ["step-000003"]
    assert signal.getsignal(signal.SIGINT) is handler  # the Trainer's handler is gone
    assert _trainer(tmp_path / "run", clm_source(8)).fit(resume=True)["step"] == 6
    a = load_file(tmp_path / "straight" / "step-000006" / "model.safetensors")
    b = load_file(tmp_path / "run" / "step-000006" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_second_ctrl_c_stops_at_once_and_says_nothing_was_saved(tmp_path):
    with pytest.raises(Interrupted, match="stopped at once at step 1 without saving; no checkpoint was saved"):
        _trainer(tmp_path, CtrlCAt(clm_source(8), at=2, times=2)).fit()
    assert list(tmp_path.glob("step-*")) == []


def _pretrain_config(folder: Path) -> Path:
    corpus = folder / "corpus.txt"
    corpus.write_text("\n\n".join(f"line {i} of a little corpus, with words {i % 7} and {i % 5}." for i in range(200)))
    Tokenizer.train_bpe([corpus], vocab_size=300).save(folder / "tok")
    cfg = {
        "model": {"preset": "gpt-mini", "dim": 32, "layers": 2, "heads": 2, "mlp_dim": 64, "max_positions": 32},
        "tokenizer": {"path": str(folder / "tok")},
        "data": {"train": [str(corpus)], "seq_len": 32, "eval_fraction": 0.0},
        "train": {
            "task": "clm",
            "batch_size": 4,
            "max_steps": 400,
            "log_every": 1,
            "plot": False,
            "tensorboard": False,
            "precision": "fp32",
        },
    }
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_ctrl_c_on_the_command_line_saves_prints_the_resume_command_and_exits_130(tmp_path, capsys):
    config, run = _pretrain_config(tmp_path), tmp_path / "run"
    args = ["pretrain", str(config), "--out", str(run), "--train.max_steps=400"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "damoxing", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    metrics = run / "metrics.jsonl"
    while proc.poll() is None and (not metrics.is_file() or metrics.read_text().count("\n") < 2):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err
    step = int(re.search(r"interrupted at step (\d+); saved ", err).group(1))
    assert 2 <= step < 400, err
    assert (run / f"step-{step:06d}" / "model.safetensors").is_file()
    expected = shlex.join(["damoxing", *args, "--resume"])
    assert f"resume with: {expected}\n" in err
    assert "Traceback" not in err
    # the printed command continues the run (here in-process, to spare a second start of Python)
    assert main(shlex.split(expected)[1:] + ["--train.max_steps=" + str(step + 2)]) == 0
    assert f"resuming from {run / f'step-{step:06d}'}" in capsys.readouterr().out
    assert (run / f"step-{step + 2:06d}").is_dir()
