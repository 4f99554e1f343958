"""`damoxing finetune CONFIG.yaml --out DIR --section.key=value`: the whole command on a tiny preset model."""

from __future__ import annotations

import json

import yaml

from damoxing.cli import main
from damoxing.recipes.evaluate import predict

from .conftest import config


def test_finetune_command_end_to_end(tokenizer, topic_data, tmp_path, capsys):
    tokenizer.save(tmp_path / "tok")
    cfg = config(topic_data, "head")
    cfg["model"] = {
        "preset": "bert-tiny",
        "vocab_size": tokenizer.vocab_size,
        "dim": 32,
        "layers": 2,
        "heads": 2,
        "mlp_dim": 64,
        "max_positions": 64,
    }
    cfg["tokenizer"] = {"path": str(tmp_path / "tok")}
    cfg["train"]["epochs"] = 1
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    assert (
        main(
            [
                "finetune",
                str(tmp_path / "ft.yaml"),
                "--out",
                str(out),
                "--finetune.method=features",
                f"--finetune.cache_dir={tmp_path / 'cache'}",
            ]
        )
        == 0
    )
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["finetune"]["method"] == "features" and saved["train"]["task"] == "classification"
    result = json.loads((out / "result.json").read_text())
    assert result["trainable_parameters"] == 32 * 3 + 3 and result["valid"]["accuracy"] > topic_data["majority"]
    meta = json.loads((out / "model" / "finetune.json").read_text())
    assert meta["labels"] == ["food", "sport", "tech"] and meta["pooling"] == "mean"
    capsys.readouterr()

    assert main(["predict", "--model", str(out / "model"), "a goal for the team"]) == 0
    label, probability, text = capsys.readouterr().out.rstrip("\n").split("\t")
    # the command prints what the library predicts (a random tiny body: which label is not the point here)
    row = next(iter(predict(out / "model", texts=["a goal for the team"])))
    assert (label, text) == (row["label"], "a goal for the team") and float(probability) == round(row["probability"], 4)

    assert main(["finetune", str(tmp_path / "ft.yaml"), "--finetune.methd=lora"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'finetune.methd'" in err and "Did you mean 'finetune.method'" in err


def test_finetune_skip_bad_counts_what_it_skips(tokenizer, topic_data, tmp_path, capsys):
    tokenizer.save(tmp_path / "tok")
    train = tmp_path / "train.csv"
    train.write_text(topic_data["train"].read_text() + "a row,with,too many fields\n")
    cfg = config({**topic_data, "train": train}, "features")
    cfg["model"] = {
        "preset": "bert-tiny",
        "vocab_size": tokenizer.vocab_size,
        "dim": 32,
        "layers": 1,
        "heads": 2,
        "mlp_dim": 64,
        "max_positions": 64,
    }
    cfg["tokenizer"] = {"path": str(tmp_path / "tok")}
    cfg["finetune"]["cache_dir"] = str(tmp_path / "cache")
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["finetune", str(tmp_path / "ft.yaml"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"{train}:242: " in err and "--skip-bad" in err and len(err.strip().splitlines()) == 1
    assert main(["finetune", str(tmp_path / "ft.yaml"), "--out", str(tmp_path / "run"), "--skip-bad"]) == 0
    assert "skipped 1 bad records (malformed_row: 1)" in capsys.readouterr().out
