"""Checkpoints: write atomically, keep the last K and the best, find the newest to resume from.

A checkpoint is a folder `RUN/step-000200/` holding
    config.json, model.safetensors, tokenizer files   the model, Hugging Face layout (written by `save`)
    config.yaml                                       the resolved run config
    training_state.pt                                 optimiser, scaler, step, data position, RNG states
The folder is built under a hidden temporary name and renamed into place in one step, so a run killed
at any moment leaves only complete checkpoints. training_state.pt holds tensors and plain values only
and is read back with torch.load(weights_only=True): nothing is unpickled.
"""
from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..atomic import atomic_dir, atomic_open
from ..config import save_yaml
from ..errors import CheckpointError

STATE_FILE = "training_state.pt"
STEP_DIR = re.compile(r"^step-(\d+)$")


# ---------------------------------------------------------------- RNG states as plain tensors
def rng_state() -> dict:
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "python": {"version": py_version, "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(x) for x in p["state"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------- folders
def checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints in the run folder, oldest first."""
    if not run_dir.is_dir():
        return []
    found = [p for p in run_dir.iterdir() if p.is_dir() and STEP_DIR.match(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(STEP_DIR.match(p.name).group(1)))


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = checkpoints(run_dir)
    return found[-1] if found else None


def best_checkpoint(run_dir: Path) -> Path | None:
    """The folder named in RUN/best.json (written when an evaluation improves the tracked metric)."""
    try:
        name = json.loads((run_dir / "best.json").read_text())["checkpoint"]
    except (OSError, ValueError, KeyError):
        return None
    return run_dir / name if (run_dir / name / STATE_FILE).is_file() else None


def remove_partial(run_dir: Path) -> None:
    """Temporary folders left by a run killed while writing (`.step-000200.xxxx.tmp`)."""
    if run_dir.is_dir():
        for p in run_dir.glob(".step-*.tmp"):
            shutil.rmtree(p, ignore_errors=True)


def save_checkpoint(run_dir: Path, step: int, save_model: Callable[[Path], None], training_state: dict,
                    config: dict | None, keep_last: int, keep: set[str] = frozenset()) -> Path:
    """Write RUN/step-{step}/ atomically, then delete the oldest beyond `keep_last` (never those in `keep`)."""
    path = run_dir / f"step-{step:06d}"
    with atomic_dir(path) as tmp:
        save_model(tmp)
        if config is not None:
            save_yaml(config, tmp / "config.yaml")
        torch.save(training_state, tmp / STATE_FILE)
    old = [p for p in checkpoints(run_dir) if p.name not in keep and p != path]
    for p in old[: max(0, len(old) - max(keep_last - 1, 0))]:
        shutil.rmtree(p, ignore_errors=True)
    return path


def mark_best(run_dir: Path, checkpoint: Path, metric: str, value: float, step: int) -> None:
    with atomic_open(run_dir / "best.json") as f:
        json.dump({"checkpoint": checkpoint.name, "metric": metric, "value": value, "step": step}, f)


def load_training_state(path: Path) -> dict:
    try:
        return torch.load(path / STATE_FILE, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no {STATE_FILE}; not a training checkpoint (cannot resume from it)") from None
    except Exception as e:  # a damaged file: say which, never a traceback
        raise CheckpointError(f"{path / STATE_FILE}: cannot be read ({e})") from None
