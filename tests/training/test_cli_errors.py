"""Config mistakes: one clear message naming the key or file, exit code 2, no traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}


def _run(tmp_path: Path, cfg: dict, *extra: str) -> subprocess.CompletedProcess:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return subprocess.run(
        [sys.executable, "-m", "damoxing", "pretrain", str(path), "--out", str(tmp_path / "run"), *extra],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _good(tmp_path: Path) -> dict:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("to be or not to be\n\nthat is the question\n")
    return {
        "model": {"preset": "gpt-mini"},
        "tokenizer": {"train": True, "kind": "bpe", "vocab_size": 300},
        "data": {"train": [str(corpus)]},
        "train": {"task": "clm", "lr": 1e-3},
    }


CASES = {
    "typo in a section": (lambda c: c.update(trian=c.pop("train")), ["unknown key 'trian'", "Did you mean 'train'"]),
    "typo in a key": (lambda c: c["train"].update(lrr=1e-3), ["unknown key 'train.lrr'", "Did you mean 'train.lr'"]),
    "missing data file": (
        lambda c: c["data"].update(train=["nowhere/corpus.txt"]),
        ["data.train", "nowhere/corpus.txt"],
    ),
    "unknown preset": (lambda c: c["model"].update(preset="bert-huge"), ["model.preset", "'bert-huge'", "bert-base"]),
    "bad value": (lambda c: c["train"].update(optimizer="adamw8"), ["train.optimizer", "Did you mean 'adamw'"]),
    "unknown task": (lambda c: c["train"].update(task="clmm"), ["train.task", "'clmm'"]),
    "task and model disagree": (lambda c: c["model"].update(preset="bert-mini"), ["needs a decoder"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_config_error_is_one_message(case, tmp_path):
    change, expected = CASES[case]
    cfg = _good(tmp_path)
    change(cfg)
    done = _run(tmp_path, cfg)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("damoxing pretrain: error: "), done.stderr
    for text in expected:
        assert text in lines[0], lines[0]


def test_bad_override_names_the_key(tmp_path):
    done = _run(tmp_path, _good(tmp_path), "--train.batch_size=-4")
    assert done.returncode == 2 and "train.batch_size" in done.stderr and "Traceback" not in done.stderr
