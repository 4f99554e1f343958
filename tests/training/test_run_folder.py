"""The run folder: which folders a run may write, one run at a time (the lock), start-up recovery, resume
past a damaged checkpoint, and the tokenizer a resumed run uses."""

import os
import shutil
import signal

import pytest
import yaml

import damoxing
from damoxing.cli import main
from damoxing.errors import CheckpointError, UserError
from damoxing.tokenizer import Tokenizer
from damoxing.training import TrainConfig, Trainer, state

from .tiny import HF, clm_source, tiny_decoder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    path = folder / "corpus.txt"
    path.write_text("\n\n".join(f"line {i} of a small corpus with words {i % 7} and {i % 5}." for i in range(120)))
    return path


def _config(folder, corpus, tokenizer: dict, **train) -> str:
    cfg = {
        "model": {"preset": "gpt-mini", "dim": 32, "layers": 2, "heads": 2, "mlp_dim": 64, "max_positions": 32},
        "tokenizer": tokenizer,
        "data": {"train": [str(corpus)], "seq_len": 32, "eval_fraction": 0.0},
        "train": {
            "task": "clm",
            "batch_size": 4,
            "max_steps": 2,
            "save_every": 1,
            "log_every": 1,
            "plot": False,
            "tensorboard": False,
            "precision": "fp32",
            **train,
        },
    }
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_run_refuses_a_file_or_a_folder_no_run_wrote_unless_forced(tmp_path, corpus, capsys):
    config = _config(tmp_path, corpus, {"train": True, "kind": "bpe", "vocab_size": 300})
    file = tmp_path / "notes.txt"
    file.write_text("keep me")
    assert main(["pretrain", config, "--out", str(file)]) == 2
    assert "is a file, not a run folder" in _error(capsys) and file.read_text() == "keep me"
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("keep me too")
    assert main(["pretrain", config, "--out", str(folder)]) == 2
    assert "not empty and no damoxing run wrote it (thesis.tex)" in _error(capsys)
    assert sorted(p.name for p in folder.iterdir()) == ["thesis.tex"]  # nothing written, no tokenizer trained
    assert main(["pretrain", config, "--out", str(folder), "--force"]) == 0
    assert (folder / "thesis.tex").read_text() == "keep me too" and (folder / "step-000002").is_dir()
    assert main(["pretrain", config, "--out", str(file), "--force"]) == 0  # the file is replaced
    assert (file / "step-000002").is_dir()


def test_finetune_applies_the_same_rule_before_loading_anything(tmp_path, capsys, minilm_dir):
    (tmp_path / "train.csv").write_text("text,label\na,x\nb,y\n")
    (tmp_path / "ft.yaml").write_text(
        yaml.safe_dump(
            {
                "model": {"path": str(minilm_dir)},
                "data": {"train": [str(tmp_path / "train.csv")]},
                "finetune": {"method": "head"},
            }
        )
    )
    out = tmp_path / "out.txt"
    out.write_text("keep me")
    assert main(["finetune", str(tmp_path / "ft.yaml"), "--out", str(out)]) == 2
    assert "is a file, not a run folder" in _error(capsys) and out.read_text() == "keep me"


def _hold(run) -> int:
    """A child process that holds the run folder until it is killed (like a live run)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            with state.run_folder(run):
                os.write(write, b"x")
                signal.pause()
        finally:
            os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"x"
    os.close(read)
    return pid


def test_a_second_run_is_refused_before_any_work_and_a_killed_runs_lock_never_blocks(tmp_path, corpus, capsys):
    run = tmp_path / "run"
    pid = _hold(run)
    try:
        live = run / ".step-000001.abcdefgh.tmp"  # what the live run is writing now
        live.mkdir()
        config = _config(tmp_path, corpus, {"train": True, "kind": "bpe", "vocab_size": 300})
        assert main(["pretrain", config, "--out", str(run)]) == 2
        assert f"in use by another run (pid {pid} on " in _error(capsys)
        assert live.is_dir() and not (run / "tokenizer").exists()  # no clean-up, no tokenizer training
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    # the kernel released the dead run's lock: the next run takes the folder and clears what was left
    assert main(["pretrain", config, "--out", str(run)]) == 0
    assert not live.exists() and (run / "step-000002").is_dir()


def test_a_fresh_run_refuses_earlier_checkpoints_before_training_a_tokenizer(tmp_path, corpus, capsys):
    config = _config(tmp_path, corpus, {"train": True, "kind": "bpe", "vocab_size": 300})
    run = tmp_path / "run"
    assert main(["pretrain", config, "--out", str(run)]) == 0
    capsys.readouterr()
    before = (run / "tokenizer" / "tokenizer.json").stat().st_mtime_ns
    assert main(["pretrain", config, "--out", str(run), "--tokenizer.vocab_size=280"]) == 2
    assert "holds checkpoints of an earlier run: resume it (--resume)" in _error(capsys)
    assert (run / "tokenizer" / "tokenizer.json").stat().st_mtime_ns == before


def test_resume_takes_the_tokenizer_from_the_checkpoint_and_says_so(tmp_path, corpus, capsys):
    first, other = tmp_path / "first", tmp_path / "other"
    Tokenizer.train_bpe([corpus], vocab_size=300).save(first)
    Tokenizer.train_bpe([corpus], vocab_size=260).save(other)
    run = tmp_path / "run"
    assert main(["pretrain", _config(tmp_path, corpus, {"path": str(first)}), "--out", str(run)]) == 0
    capsys.readouterr()
    config = _config(tmp_path, corpus, {"path": str(other)}, max_steps=3)
    assert main(["pretrain", config, "--out", str(run), "--resume"]) == 0
    out = capsys.readouterr().out
    assert f"resuming with the tokenizer saved in {run / 'step-000002'}" in out
    assert f"asks for tokenizer.path {other}, which differs and is not used" in out
    assert Tokenizer.load(run / "step-000003").backend.to_str() == Tokenizer.load(first).backend.to_str()
    assert damoxing.load(run / "step-000003").config.vocab_size == Tokenizer.load(first).vocab_size


def test_start_up_restores_a_lone_old_checkpoint_and_removes_every_temporary_name(tmp_path):
    cfg = TrainConfig(task="clm", max_steps=2, save_every=1, keep_last=2, plot=False, tensorboard=False)
    Trainer(tiny_decoder(), "clm", clm_source(8), cfg, tmp_path, **HF).fit()
    os.rename(tmp_path / "step-000002", tmp_path / ".step-000002.old")  # a kill between the two renames
    shutil.copytree(tmp_path / "step-000001", tmp_path / ".step-000001.old")  # a kill before its deletion
    leftovers = [
        "..step-000027.abcd1234.tmp.efgh5678.tmp",
        ".step-000003.abcd1234.tmp",
        ".step-000001.abcd1234.del",
        "..step-000027.abcd1234.tmp.old",
    ]
    for name in leftovers:
        (tmp_path / name).mkdir()
        (tmp_path / name / "training_state.pt").write_bytes(b"half")
    (tmp_path / ".best.json.abcd1234.tmp").write_text("{")
    with state.run_folder(tmp_path, check=False):
        names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [state.LOCK_FILE, "metrics.jsonl", "step-000001", "step-000002"]
    for ckpt in state.step_folders(tmp_path):
        damoxing.load(ckpt)


def test_resume_falls_back_past_damaged_checkpoints_and_says_so(tmp_path, capsys):
    cfg = TrainConfig(task="clm", max_steps=3, save_every=1, keep_last=3, plot=False, tensorboard=False)
    Trainer(tiny_decoder(), "clm", clm_source(8), cfg, tmp_path, **HF).fit()
    (tmp_path / "step-000003" / "config.json").unlink()  # left by a deletion that was killed half-way
    weights = tmp_path / "step-000002" / "model.safetensors"
    weights.write_bytes(b"\0" * weights.stat().st_size)  # same size, unreadable
    assert [p.name for p in state.checkpoints(tmp_path)] == ["step-000001", "step-000002"]
    with pytest.raises(CheckpointError, match=r"not a complete checkpoint \(config.json is missing\)"):
        state.load_training_state(tmp_path / "step-000003")
    capsys.readouterr()
    trainer = Trainer(tiny_decoder(), "clm", clm_source(8), cfg, tmp_path, **HF)
    assert trainer.fit(resume=True)["step"] == 3
    out = capsys.readouterr().out
    assert f"resuming from {tmp_path / 'step-000001'} (step 1," in out
    assert "skipped a newer checkpoint: " in out and "config.json is missing" in out and "model.safetensors" in out
    assert state.step_folders(tmp_path) == state.checkpoints(tmp_path)  # the damaged ones were saved again
    for ckpt in state.step_folders(tmp_path):
        damoxing.load(ckpt)


def test_a_run_folder_with_no_complete_checkpoint_is_not_resumed_silently(tmp_path):
    (tmp_path / "step-000004").mkdir()
    (tmp_path / "step-000004" / "training_state.pt").write_bytes(b"half")
    cfg = TrainConfig(task="clm", max_steps=2, plot=False, tensorboard=False)
    with pytest.raises(UserError, match="no checkpoint can be resumed from .*move the damaged folders away"):
        Trainer(tiny_decoder(), "clm", clm_source(8), cfg, tmp_path, **HF).fit(resume=True)
    with pytest.raises(UserError, match="holds checkpoints of an earlier run"):
        Trainer(tiny_decoder(), "clm", clm_source(8), cfg, tmp_path, **HF).fit()
    assert (tmp_path / "step-000004" / "training_state.pt").read_bytes() == b"half"  # left for the user to judge
