"""The run folder: one run at a time (a lock), crash-safe checkpoints, the best one, the newest to resume from.

A checkpoint is a folder `RUN/step-000200/` holding
    config.json, model.safetensors, tokenizer files   the model, Hugging Face layout (written by `save`)
    config.yaml                                       the resolved run config
    training_state.pt                                 optimiser, scaler, step, data position, RNG states
    checkpoint.json                                   the step, and every file above with its size
training_state.pt holds tensors and plain values only and is read back with torch.load(weights_only=True):
nothing is unpickled.

How a checkpoint is saved, so that a kill at any moment loses nothing that was saved before:
1. everything is written into one temporary folder `.step-000200.xxxxxxxx.tmp`, every file fsynced;
2. an existing `step-000200` (a re-save of the same step) is renamed to `.step-000200.old`;
3. the temporary folder is renamed to `step-000200`; the run folder is fsynced after each rename;
4. `.step-000200.old` is deleted, `best.json` is updated (atomically) if this checkpoint is the best;
5. only then are older checkpoints deleted, each renamed to a `.del` name first.
Start-up (`run_folder`) restores or removes every leftover name (see damoxing/atomic.py), and a folder
whose files do not match its checkpoint.json is not a checkpoint: resume falls back to an older one.

The run folder is locked (`fcntl.flock` on RUN/.damoxing.lock) while a run writes it: a second run gets a
clear message, and the kernel releases the lock when a run dies, however it dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import random
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_dir, atomic_open, recover, remove
from ..config import save_yaml
from ..errors import CheckpointError, UserError
from . import distributed

STATE_FILE = "training_state.pt"
MANIFEST = "checkpoint.json"
LOCK_FILE = ".damoxing.lock"
STEP_DIR = re.compile(r"^step-(\d+)$")
RUN_FILES = (LOCK_FILE, "metrics.jsonl", "best.json", "result.json")  # names only a damoxing run writes


# ---------------------------------------------------------------- RNG states as plain tensors
def rng_state() -> dict:
    _np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "python": {"version": py_version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss": py_gauss},
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


# ---------------------------------------------------------------- the run folder: checks, lock, recovery
_held: dict[str, list] = {}  # run folders this process holds: real path -> [lock file descriptor, depth]


def is_run_folder(path: Path) -> bool:
    """Whether `path` holds something only a damoxing run writes (its lock, metrics, a checkpoint)."""
    return any((path / name).exists() for name in RUN_FILES) or bool(step_folders(path))


def check_run_folder(run_dir: Path, force: bool = False) -> None:
    """A run may write a new or empty folder, or one an earlier run wrote; anything else needs `force`."""
    if run_dir.is_symlink() or run_dir.exists():
        if not run_dir.is_dir():
            if not force:
                raise UserError(
                    f"{run_dir} is a file, not a run folder: choose another folder (--out), "
                    "or pass --force to replace the file"
                )
            remove(run_dir)
        elif not force and not is_run_folder(run_dir) and any(run_dir.iterdir()):
            names = sorted(p.name for p in run_dir.iterdir())
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            raise UserError(
                f"{run_dir} is not empty and no damoxing run wrote it ({shown}): choose another "
                "folder (--out), or pass --force to write the run into it anyway"
            )


def _lock(run_dir: Path) -> int:
    """flock RUN/.damoxing.lock (released by the kernel when the process dies); returns the descriptor."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
        os.close(fd)
        raise UserError(
            f"{run_dir} is in use by another run ({holder}): wait for it to finish, or write to another folder (--out)"
        ) from None
    except OSError as e:
        os.close(fd)
        raise UserError(f"{path}: cannot lock the run folder ({e.strerror}); use a folder on a local disk") from None
    os.ftruncate(fd, 0)
    os.pwrite(
        fd, f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0
    )
    return fd


def _take(run_dir: Path, check: bool, force: bool) -> int:
    if check:
        check_run_folder(run_dir, force)
    fd = _lock(run_dir)
    try:
        for line in recover(run_dir, complete=lambda p: checkpoint_problem(p) is None):
            print(f"{run_dir}: {line}", flush=True)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def run_folder(run_dir: str | Path, d: distributed.Dist | None = None, *, check: bool = True, force: bool = False):
    """Own the run folder for the block: check that a run may write it (`check_run_folder`, for commands),
    lock it, and restore or remove what an interrupted run left in it. Under DDP/FSDP rank 0 does this and
    the other ranks follow its outcome. Reentrant: a recipe holds the folder, its Trainer takes it again."""
    run_dir, d = Path(run_dir), d or distributed.Dist()
    key = os.path.realpath(run_dir)
    if key in _held:
        _held[key][1] += 1
    else:
        error, fd = None, None
        if d.main:
            try:
                fd = _take(run_dir, check, force)
            except Exception as e:  # the other ranks must hear of it, not wait forever  # noqa: BLE001
                error = e
        if distributed.broadcast_flag(error is not None, d):
            if error is not None:
                raise error
            raise UserError(f"{run_dir}: rank 0 could not take the run folder (its message says why)")
        _held[key] = [fd, 1]
    try:
        yield run_dir
    finally:
        _held[key][1] -= 1
        if _held[key][1] == 0:
            fd = _held.pop(key)[0]
            if fd is not None:
                os.close(fd)  # releases the lock


def refuse_earlier_run(run_dir: Path) -> None:
    """A fresh run never writes into a folder that holds another run's checkpoints."""
    if step_folders(run_dir):
        raise UserError(
            f"{run_dir} holds checkpoints of an earlier run: resume it (--resume), or write to another folder (--out)"
        )


# ---------------------------------------------------------------- checkpoints
def step_folders(run_dir: Path) -> list[Path]:
    """Every `step-N` folder, complete or not, oldest first."""
    if not run_dir.is_dir():
        return []
    found = [p for p in run_dir.iterdir() if STEP_DIR.match(p.name) and p.is_dir()]
    return sorted(found, key=lambda p: int(STEP_DIR.match(p.name).group(1)))


def checkpoint_problem(path: Path) -> str | None:
    """Why `path` is not a complete checkpoint (None when it is): a file of checkpoint.json missing or of
    another size. Folders from before checkpoint.json existed need training_state.pt and a config."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
    except FileNotFoundError:
        if not (path / STATE_FILE).is_file():
            return f"no {STATE_FILE}"
        if not any((path / name).is_file() for name in ("config.json", "adapter_config.json")):
            return "no config.json"
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"{MANIFEST} cannot be read ({e})"
    for name, size in files.items():
        try:
            actual = (path / name).stat().st_size
        except OSError:
            return f"{name} is missing"
        if actual != size:
            return f"{name} has {actual} bytes, not {size}"
    return None


def checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints in the run folder, oldest first."""
    return [p for p in step_folders(run_dir) if checkpoint_problem(p) is None]


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = checkpoints(run_dir)
    return found[-1] if found else None


def best_checkpoint(run_dir: Path) -> Path | None:
    """The folder named in RUN/best.json (written when an evaluation improves the tracked metric)."""
    try:
        name = json.loads((run_dir / "best.json").read_text())["checkpoint"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return run_dir / name if STEP_DIR.match(str(name)) and (run_dir / name).is_dir() else None


def _write_manifest(folder: Path, step: int) -> None:
    files = {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}
    with atomic_open(folder / MANIFEST) as f:
        json.dump({"step": step, "files": files}, f, indent=1)


def save_checkpoint(
    run_dir: Path,
    step: int,
    save_model: Callable[[Path], None],
    training_state: dict,
    config: dict | None,
    keep_last: int,
    best: dict | None = None,
) -> Path:
    """Write RUN/step-{step}/ (see the module docstring), mark it best if `best` ({"metric", "value"}) is
    given, then delete the oldest checkpoints beyond `keep_last`, never the one best.json names."""
    path = run_dir / f"step-{step:06d}"
    with atomic_dir(path) as tmp:
        save_model(tmp)
        if config is not None:
            save_yaml(config, tmp / "config.yaml")
        torch.save(training_state, tmp / STATE_FILE)
        _write_manifest(tmp, step)
    if best is not None:
        mark_best(run_dir, path, best["metric"], best["value"], step)
    keep = {path.name} | {p.name for p in [best_checkpoint(run_dir)] if p is not None}
    old = [p for p in checkpoints(run_dir) if p.name not in keep]
    for p in old[: max(0, len(old) - max(keep_last - 1, 0))]:
        remove(p)
    return path


def mark_best(run_dir: Path, checkpoint: Path, metric: str, value: float, step: int) -> None:
    if not math.isfinite(value):
        raise ValueError(f"a non-finite {metric} ({value}) never marks a best checkpoint")
    with atomic_open(run_dir / "best.json") as f:
        json.dump({"checkpoint": checkpoint.name, "metric": metric, "value": value, "step": step}, f, allow_nan=False)


def load_training_state(path: Path) -> dict:
    problem = checkpoint_problem(path)
    if problem is not None:
        raise CheckpointError(f"{path}: not a complete checkpoint ({problem}); cannot resume from it")
    try:
        return torch.load(path / STATE_FILE, weights_only=True, map_location="cpu")
    except Exception as e:  # a damaged file: say which, never a traceback  # noqa: BLE001
        raise CheckpointError(f"{path / STATE_FILE}: cannot be read ({e})") from None
