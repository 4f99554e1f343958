"""Fault injection at every file-system call of the checkpoint save sequence (see save_faults.py)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .save_faults import (
    Faults,
    check_run,
    dry_run,
    resume_and_finish,
    saved_before,
    trainer,
)


def test_a_full_disk_at_any_call_of_the_save_sequence_loses_nothing(tmp_path, monkeypatch):
    total, saved = dry_run(tmp_path / "dry")
    assert total > 30  # the sequence really was counted
    failed = 0
    for k in range(1, total + 1):
        run = tmp_path / f"run{k}"
        with monkeypatch.context() as mp:
            Faults(mp, at=k)
            try:
                trainer(run).fit()
            except OSError as e:  # some calls may fail harmlessly (mkdir of an existing folder, a clean-up)
                assert "injected" in str(e)
                failed += 1
        check_run(run, saved_before(saved, k))  # the failing process itself put back what it renamed away
        resume_and_finish(run)
        shutil.rmtree(run)
    assert failed > total // 2


@pytest.mark.slow
def test_a_kill_at_any_call_of_the_save_sequence_loses_nothing(tmp_path):
    tests = Path(__file__).parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(tests.parent), str(tests)])}
    done = subprocess.run(
        [sys.executable, "-m", "training.save_faults", str(tmp_path)],
        cwd=tests,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "every check passed" in done.stdout
