"""Failures of the file system and of the input each give one line naming the path and what to do, exit code 2.

The CLI runs in-process (damoxing.cli.main). Tests run as root here, so a file that may not be read is a link
to a write-only /proc file (root may not read it either), and a folder that may not be written is /sys.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import torch
import yaml

import damoxing
from damoxing.cli import main
from damoxing.io.finetuned import save_finetuned
from damoxing.tokenizer import Tokenizer

WRITE_ONLY = Path("/proc/sys/vm/drop_caches")  # mode 0200: nobody may read it, root included
NOT_WRITABLE = Path("/sys")  # sysfs: no one may create a file there


def make_unreadable(path: Path) -> Path:
    """`path` becomes a file that cannot be read (PermissionError), whoever runs the tests."""
    try:
        WRITE_ONLY.open("rb").close()
    except PermissionError:
        path.unlink(missing_ok=True)
        path.symlink_to(WRITE_ONLY)
        return path
    except OSError:
        pass
    pytest.skip(f"{WRITE_ONLY} is not a file that no one may read on this system")


def one_line_error(capsys, command: str) -> str:
    """The single line on stderr; there is no traceback."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"damoxing {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny untrained classifier folder (what predict needs; the predictions themselves do not matter here)."""
    folder = tmp_path_factory.mktemp("model")
    corpus = folder / "corpus.txt"
    corpus.write_text("good bad phone day great awful the a is\n", encoding="utf-8")
    tok = Tokenizer.train_wordpiece([corpus], vocab_size=60, min_frequency=1, model_max_length=32)
    torch.manual_seed(0)
    model = damoxing.create_model(
        damoxing.preset(
            "bert-tiny",
            vocab_size=tok.vocab_size,
            dim=32,
            layers=1,
            heads=2,
            mlp_dim=64,
            max_positions=32,
            head="sequence",
            num_labels=2,
        )
    )
    model.labels = ["neg", "pos"]
    return save_finetuned(model, tok, folder / "model", {"task": "classification", "max_length": 32})


def pretrain_config(tmp_path: Path, **train) -> Path:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("to be or not to be\n\nthat is the question\n\nwhether tis nobler in the mind\n")
    cfg = {
        "model": {"preset": "gpt-mini", "dim": 32, "layers": 2, "heads": 2, "mlp_dim": 64, "max_positions": 64},
        "tokenizer": {"train": True, "kind": "bpe", "vocab_size": 300},
        "data": {"train": [str(corpus)], "seq_len": 16, "eval_fraction": 0},
        "train": {
            "task": "clm",
            "lr": 1e-3,
            "batch_size": 1,
            "max_steps": 2,
            "plot": False,
            "tensorboard": False,
            **train,
        },
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


# ---------------------------------------------------------------- files that may not be read
def test_unreadable_config(tmp_path, capsys):
    config = make_unreadable(tmp_path / "run.yaml")
    assert main(["pretrain", str(config), "--out", str(tmp_path / "run")]) == 2
    line = one_line_error(capsys, "pretrain")
    assert str(config) in line and "Permission denied" in line and "chmod" in line
    assert not (tmp_path / "run").exists()


def test_unreadable_data_file(tmp_path, capsys, model_dir):
    data = make_unreadable(tmp_path / "texts.txt")
    assert main(["data", "clean", str(data), str(tmp_path / "clean.txt")]) == 2
    line = one_line_error(capsys, "data")
    assert str(data) in line and "Permission denied" in line
    assert main(["predict", "--model", str(model_dir), "--data", str(data)]) == 2
    line = one_line_error(capsys, "predict")
    assert str(data) in line and "Permission denied" in line and "chmod" in line


def test_unreadable_model_safetensors(tmp_path, capsys, model_dir):
    folder = tmp_path / "model"
    folder.mkdir()
    for file in model_dir.iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    make_unreadable(folder / "model.safetensors")
    assert main(["predict", "--model", str(folder), "good phone"]) == 2
    line = one_line_error(capsys, "predict")
    assert f"{folder / 'model.safetensors'}: cannot read it (Permission denied)" in line
    assert "no such file" not in line.lower() and "download" not in line


# ---------------------------------------------------------------- outputs that cannot be written
def test_output_is_a_folder(tmp_path, capsys, model_dir):
    texts = tmp_path / "texts.txt"
    texts.write_text("good phone\nbad day\n")
    folder = tmp_path / "out.jsonl"
    folder.mkdir()
    assert main(["predict", "--model", str(model_dir), "--data", str(texts), "--output", str(folder)]) == 2
    assert f"{folder}: --output is a folder" in one_line_error(capsys, "predict")
    assert main(["data", "clean", str(texts), str(folder)]) == 2
    assert f"{folder}: the output is a folder" in one_line_error(capsys, "data")
    report = tmp_path / "report"
    report.write_text("a file where the report folder should go")
    labelled = tmp_path / "labelled.csv"
    labelled.write_text("text,label\ngood phone,pos\n")
    assert main(["evaluate", "--model", str(model_dir), "--data", str(labelled), "--out", str(report)]) == 2
    assert f"{report}: a file is in the way" in one_line_error(capsys, "evaluate")
    assert list(folder.iterdir()) == []


def test_output_not_writable(tmp_path, capsys, model_dir):
    texts = tmp_path / "texts.txt"
    texts.write_text("good phone\nbad day\n")
    out = NOT_WRITABLE / "predictions.jsonl"
    assert main(["predict", "--model", str(model_dir), "--data", str(texts), "--output", str(out)]) == 2
    line = one_line_error(capsys, "predict")
    assert line.startswith(f"damoxing predict: error: {out}: ") and "choose another path" in line
    assert main(["data", "clean", str(texts), str(NOT_WRITABLE / "clean.txt")]) == 2
    assert f"{NOT_WRITABLE / 'clean.txt'}: " in one_line_error(capsys, "data")


# ---------------------------------------------------------------- a full disk
def test_full_disk_while_writing_predictions(tmp_path, capsys, model_dir, monkeypatch):
    """The writer fails part-way: one line, and the previous predictions file is still there, whole."""
    import damoxing.inference.predict as predict_module

    texts = tmp_path / "texts.txt"
    texts.write_text("good phone\nbad day\ngreat\n")
    out = tmp_path / "predictions.jsonl"
    out.write_text('{"earlier": true}\n')

    def full_disk(rows, f):
        f.write(json.dumps(next(iter(rows))) + "\n")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(predict_module, "write_jsonl", full_disk)
    assert main(["predict", "--model", str(model_dir), "--data", str(texts), "--output", str(out)]) == 2
    line = one_line_error(capsys, "predict")
    assert f"{out}: no space left on the device; free some space" in line
    assert out.read_text() == '{"earlier": true}\n'
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def _safetensors_full(*args, **kwargs):
    from safetensors import SafetensorError

    raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


def _torch_full(*args, **kwargs):
    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")


def _os_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize(
    "writer, fail",
    [
        ("safetensors.torch.save_file", _safetensors_full),
        ("torch.save", _torch_full),
        ("safetensors.torch.save_file", _os_full),
    ],
    ids=["safetensors", "torch", "oserror"],
)
def test_full_disk_while_saving_a_checkpoint(tmp_path, capsys, monkeypatch, writer, fail):
    """The second checkpoint cannot be written: one line naming the run folder, the first checkpoint intact."""
    import importlib

    module_name, name = writer.rsplit(".", 1)
    module = importlib.import_module(module_name)
    real = getattr(module, name)
    calls = []

    def second_call_fails(*args, **kwargs):
        calls.append(1)
        return fail(*args, **kwargs) if len(calls) == 2 else real(*args, **kwargs)

    monkeypatch.setattr(module, name, second_call_fails)
    run = tmp_path / "run"
    config = pretrain_config(tmp_path, max_steps=3, save_every=1, keep_last=5)
    assert main(["pretrain", str(config), "--out", str(run)]) == 2
    line = one_line_error(capsys, "pretrain")
    assert line.startswith(f"damoxing pretrain: error: {run}: ") and ("disk is full" in line or "no space left" in line)
    assert "--resume" in line
    monkeypatch.setattr(module, name, real)
    first = run / "step-000001"
    assert (first / "training_state.pt").is_file()
    assert damoxing.load(first).config.layers == 2  # loadable: config.json and complete weights
    assert not (run / "step-000002").exists()
    assert [p.name for p in run.iterdir() if p.name.endswith(".tmp")] == []


# ---------------------------------------------------------------- input that is not text
def test_lone_surrogate_in_json_lines(tmp_path, capsys, model_dir):
    data = tmp_path / "texts.jsonl"
    lines = [json.dumps({"text": f"good phone {i}"}) for i in range(100)]
    lines.insert(96, '{"text": "half a pair \\ud800 here"}')
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "predictions.jsonl"
    assert main(["predict", "--model", str(model_dir), "--data", str(data), "--output", str(out)]) == 2
    line = one_line_error(capsys, "predict")
    assert f"{data}:97: " in line and "lone surrogate \\ud800" in line and "--skip-bad" in line
    assert not out.exists()
    assert main(["predict", "--model", str(model_dir), "--data", str(data), "--output", str(out), "--skip-bad"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 101 and rows[96]["error"] == "lone_surrogate" and rows[96]["where"] == f"{data}:97"
    assert "error" not in rows[95] and "error" not in rows[97]
    assert "1 error (lone_surrogate: 1)" in capsys.readouterr().err


# ---------------------------------------------------------------- pretrain's --skip-bad
def test_pretrain_skip_bad(tmp_path, capsys):
    config = pretrain_config(tmp_path)
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(corpus.read_bytes() + b"\na bad \xff byte\n")  # line 7
    assert main(["pretrain", str(config), "--out", str(tmp_path / "run")]) == 2
    line = one_line_error(capsys, "pretrain")
    assert f"{corpus}:7: byte 0xff" in line and "--skip-bad" in line and "data.skip_bad" in line
    assert main(["pretrain", str(config), "--out", str(tmp_path / "run2"), "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "skipped 1 bad records (bad_utf8: 1)" in out and f"{corpus}:7" in out
    assert main(["pretrain", str(config), "--out", str(tmp_path / "run3"), "--data.skip_bad=true"]) == 0
