"""Kill -9 a `damoxing pretrain` run at a random step, resume it, and get bitwise the same weights."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import damoxing
from damoxing.tokenizer import Tokenizer
from damoxing.training.state import STATE_FILE, checkpoints

WORDS = [
    "the",
    "king",
    "queen",
    "sword",
    "crown",
    "night",
    "day",
    "love",
    "death",
    "ghost",
    "storm",
    "sea",
    "ship",
    "letter",
    "ring",
    "gold",
]


def _corpus(folder: Path) -> Path:
    rng = random.Random(0)
    text = "\n\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))) + "." for _ in range(300))
    path = folder / "corpus.txt"
    path.write_text(text)
    return path


def _config(folder: Path, task: str) -> Path:
    corpus = _corpus(folder)
    if task == "clm":
        tok = Tokenizer.train_bpe([corpus], vocab_size=300)
    elif task == "span_corruption":  # T5's objective: a sentencepiece-style vocabulary with sentinels
        tok = Tokenizer.train_sentencepiece([corpus], vocab_size=80, extra_ids=20)
    else:
        tok = Tokenizer.train_wordpiece([corpus], 200)
    tok.save(folder / "tok")
    preset = {"clm": "gpt-mini", "span_corruption": "t5-small"}.get(task, "bert-mini")
    model = {"preset": preset, "dim": 32, "layers": 2, "heads": 2, "mlp_dim": 64, "max_positions": 32, "dropout": 0.1}
    cfg = {
        "model": model,
        "tokenizer": {"path": str(folder / "tok")},
        "data": {"train": [str(corpus)], "seq_len": 32, "eval_fraction": 0.1, "text_mode": "paragraph"},
        "train": {
            "task": task,
            "batch_size": 8,
            "max_steps": 24,
            "save_every": 2,
            "eval_every": 8,
            "log_every": 1,
            "keep_last": 2,
            "lr": 3e-3,
            "warmup_steps": 3,
            "plot": False,
            "tensorboard": False,
        },
    }
    path = folder / f"{task}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _cmd(config: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "damoxing", "pretrain", str(config), "--out", str(out), *extra]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}


def _steps_logged(run: Path) -> int:
    metrics = run / "metrics.jsonl"
    return metrics.read_text().count('"split": "train"') if metrics.is_file() else 0


def _check_all_loadable(run: Path) -> int:
    found = checkpoints(run)
    for ckpt in found:
        damoxing.load(ckpt)
        torch.load(ckpt / STATE_FILE, weights_only=True)
    return len(found)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["clm", "mlm_nsp", "span_corruption"])
def test_kill9_then_resume_is_bitwise_identical(task, tmp_path):
    config = _config(tmp_path, task)
    straight = subprocess.run(_cmd(config, tmp_path / "straight"), env=ENV, capture_output=True, text=True, check=False)
    assert straight.returncode == 0, straight.stderr

    kill_at = random.Random().randint(3, 20)  # a random step, different on every run of the test
    run = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(config, run), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and _steps_logged(run) < kill_at:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _steps_logged(run) < 24, "the run finished before it could be killed"
    _check_all_loadable(run)  # whatever the kill interrupted, every checkpoint on disk is complete

    resumed = subprocess.run(_cmd(config, run, "--resume"), env=ENV, capture_output=True, text=True, check=False)
    assert resumed.returncode == 0, resumed.stderr
    print(resumed.stdout, resumed.stderr[-3000:])
    assert _check_all_loadable(run) >= 2

    a = load_file(str(tmp_path / "straight" / "step-000024" / "model.safetensors"))
    b = load_file(str(run / "step-000024" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resuming from a kill at step {kill_at}"
