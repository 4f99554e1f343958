"""Kill -9 an image fine-tuning run (augmentation, mixup, dropout) at a random step, resume it, and get
bitwise the same weights as a run that was never interrupted."""

from __future__ import annotations

import gzip
import os
import random
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
STEPS = 24


def _config(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (96, 16, 16), dtype=np.uint8)
    labels = rng.integers(0, 3, 96).astype(np.uint8)
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, 96, 16, 16) + images.tobytes())
    with gzip.open(folder / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, 96) + labels.tobytes())
    cfg = {
        "model": {
            "preset": "vit-tiny",
            "image_size": 16,
            "dim": 32,
            "layers": 2,
            "heads": 2,
            "mlp_dim": 64,
            "dropout": 0.1,
        },
        "data": {"train": [str(folder / "train-images-idx3-ubyte.gz")], "valid_fraction": 0.2},
        "finetune": {"task": "image_classification"},
        "transforms": {"crop_padding": 2, "flip": True, "randaugment": 2, "mixup": 0.4},
        "train": {
            "batch_size": 8,
            "max_steps": STEPS,
            "epochs": 0,
            "save_every": 2,
            "eval_every": 8,
            "log_every": 1,
            "keep_last": 2,
            "lr": 3e-3,
            "precision": "fp32",
        },
    }
    path = folder / "images.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _cmd(config: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "damoxing", "finetune", str(config), "--out", str(out), *extra]


def _steps_logged(run: Path) -> int:
    metrics = run / "metrics.jsonl"
    return metrics.read_text().count('"split": "train"') if metrics.is_file() else 0


@pytest.mark.slow
def test_kill9_then_resume_an_image_run_is_bitwise_identical(tmp_path):
    config = _config(tmp_path)
    straight = subprocess.run(_cmd(config, tmp_path / "straight"), env=ENV, capture_output=True, text=True, check=False)
    assert straight.returncode == 0, straight.stderr

    kill_at = random.Random().randint(3, 20)  # a random step, different on every run of the test
    run = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(config, run), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and _steps_logged(run) < kill_at:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _steps_logged(run) < STEPS, "the run finished before it could be killed"

    resumed = subprocess.run(_cmd(config, run, "--resume"), env=ENV, capture_output=True, text=True, check=False)
    assert resumed.returncode == 0, resumed.stderr
    a = load_file(str(tmp_path / "straight" / f"step-{STEPS:06d}" / "model.safetensors"))
    b = load_file(str(run / f"step-{STEPS:06d}" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resuming from a kill at step {kill_at}"
