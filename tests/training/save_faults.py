"""Fault injection at every step of the checkpoint save sequence (used by test_save_faults.py).

A short run saves four times: a first checkpoint, a new best (the old best is then deleted), a checkpoint
that is not the best (an older one is deleted), and a re-save of the same step when the data runs out
(`.step-N.old` appears). Every file-system call of the run (mkdir, fsync, rename, replace, unlink, rmdir)
is counted in a dry run; then, for each k, the k-th call either raises (a full disk) or kills the process
with os._exit (a forked child, like kill -9). A raised error ends the run, unless the call was one whose
failure is harmless (making a folder that exists, a best-effort clean-up). Afterwards:
- every step-N folder is a complete checkpoint that damoxing.load reads, and best.json names one of them
  (after a kill: once the next start-up has restored what the kill left);
- no checkpoint that had been saved before the fault is lost (the newest step is at least that step);
- after the next start-up no temporary or .old name is left, and resume finishes the run.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sys
import traceback
from pathlib import Path

import pytest
import torch

from damoxing.io.checkpoint import load_model
from damoxing.training import TrainConfig, Trainer, state

from .tiny import HF, clm_source, tiny_decoder

CALLS = ("mkdir", "fsync", "rename", "replace", "unlink", "rmdir")
NO_FSYNC = lambda fd: None
SCORES = [1.0, 3.0, 2.0, 4.0]  # evaluations at steps 1, 2, 3 and the re-save of step 3


def trainer(run: Path, scores=SCORES) -> Trainer:
    scores = iter(scores)
    cfg = TrainConfig(
        task="clm",
        max_steps=10,
        epochs=1,
        batch_size=8,
        save_every=1,
        eval_every=1,
        keep_last=1,
        metric="score",
        metric_mode="max",
        lr=1e-3,
        log_every=1,
        plot=False,
        tensorboard=False,
        precision="fp32",
    )
    return Trainer(
        tiny_decoder(),
        "clm",
        clm_source(8, n=24),
        cfg,
        run,
        eval_data=clm_source(8, n=8),
        metrics_fn=lambda m: {"score": next(scores, 0.0)},
        **HF,
    )


class Faults:
    """Counts the file-system calls; the k-th one raises or kills the process."""

    def __init__(self, monkeypatch, at: int | None = None, kill: bool = False):
        self.n, self.at, self.kill, self.saved = 0, at, kill, []  # saved: (call count, step) per finished save
        for name in CALLS:
            monkeypatch.setattr(os, name, self._wrap(NO_FSYNC if name == "fsync" else getattr(os, name)))
        save = state.save_checkpoint

        def counted_save(run_dir, step, *args, **kwargs):
            path = save(run_dir, step, *args, **kwargs)
            self.saved.append((self.n, step))
            return path

        monkeypatch.setattr(state, "save_checkpoint", counted_save)

    def _wrap(self, real):
        def call(*args, **kwargs):
            self.n += 1
            if self.n == self.at:
                if self.kill:
                    os._exit(9)
                raise OSError(errno.ENOSPC, "No space left on device (injected)")
            return real(*args, **kwargs)

        return call


def dry_run(run: Path) -> tuple[int, list]:
    """The number of file-system calls of the whole run, and the call count at which each save finished."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "fsync", NO_FSYNC)
        trainer(run.with_name(run.name + "-warm-up")).fit()  # first-time work of the process (import caches)
    with pytest.MonkeyPatch.context() as mp:
        faults = Faults(mp)
        trainer(run).fit()
    assert [step for _, step in faults.saved] == [1, 2, 3, 3]
    return faults.n, faults.saved


def saved_before(saved: list, k: int) -> int:
    return max([step for n, step in saved if n < k], default=0)


def leftovers(run: Path) -> list[str]:
    return sorted(p.name for p in run.iterdir() if p.name.startswith(".") and p.name != state.LOCK_FILE)


def check_run(run: Path, before: int) -> None:
    """Every step folder loads, best.json names one of them, nothing saved before the fault is lost."""
    folders = state.step_folders(run)
    assert folders == state.checkpoints(run), (run.name, [state.checkpoint_problem(p) for p in folders])
    for ckpt in folders:
        load_model(ckpt)
        torch.load(ckpt / state.STATE_FILE, weights_only=True)
    newest = int(folders[-1].name.split("-")[1]) if folders else 0
    assert newest >= before, (run.name, sorted(p.name for p in run.iterdir()))
    if (run / "best.json").exists():
        assert (run / json.loads((run / "best.json").read_text())["checkpoint"]).is_dir(), run.name


def start_up(run: Path) -> None:
    with state.run_folder(run, check=False):  # start-up: restore or remove what the fault left
        assert leftovers(run) == [], run.name


def resume_and_finish(run: Path) -> None:
    start_up(run)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "fsync", NO_FSYNC)
        result = trainer(run, scores=[5.0, 6.0, 7.0, 8.0]).fit(resume=True)
    assert result["step"] == 3
    check_run(run, 3)
    assert leftovers(run) == [], run.name


def kill_at_every_call(base: Path) -> int:
    """Fork a child per call of the save sequence and kill it there; check the run folder each time."""
    total, saved = dry_run(base / "dry")
    for k in range(1, total + 1):
        run = base / f"run{k}"
        pid = os.fork()
        if pid == 0:  # the child trains until the k-th call kills it
            code = 0
            try:
                signal.alarm(120)  # a hung child fails the test instead of hanging it
                with pytest.MonkeyPatch.context() as mp:
                    Faults(mp, at=k, kill=True)
                    trainer(run).fit()
            except BaseException:  # noqa: BLE001
                traceback.print_exc()
                code = 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 9, f"call {k} of {total} did not happen in the child ({status})"
        start_up(run)  # a kill between the two renames of a re-save leaves the old version as .step-N.old
        check_run(run, saved_before(saved, k))
        resume_and_finish(run)
        shutil.rmtree(run)
    return total


if __name__ == "__main__":  # python -m training.save_faults BASE (from tests/), in a fresh single-threaded process
    torch.set_num_threads(1)  # before any work: a forked child must not inherit a thread pool
    print(f"killed at each of {kill_at_every_call(Path(sys.argv[1]))} calls; every check passed")
