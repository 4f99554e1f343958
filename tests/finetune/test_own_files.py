"""Fine-tuning on files as people have them: a CSV without a header (columns by position), no validation split."""

from __future__ import annotations

import csv
import json

import pytest

from damoxing.cli import main
from damoxing.errors import ConfigError, DataError
from damoxing.recipes.finetune import finetune

from .conftest import config, make_rows

SIGN = {"sport": "1", "tech": "-1", "food": "-1"}  # two classes, written as the movie-review CSV writes them


def headerless(path, rows):
    """The movie-review shape: the label (1 / -1) first, the sentence second, every field quoted, no header."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, quoting=csv.QUOTE_ALL).writerows((SIGN[label], text) for text, label in rows)
    return path


def test_headerless_csv_with_column_positions(tokenizer, make_encoder, tmp_path, capsys):
    """`--data.text_column=1 --data.label_column=0` on a CSV without a header trains on every row (none is
    taken for a header), with labels 1 and -1; the saved model predicts a headerless file the same way."""
    train = headerless(tmp_path / "train.csv", make_rows(120, seed=1))
    valid = headerless(tmp_path / "valid.csv", make_rows(40, seed=2))
    cfg = config({"train": train, "valid": valid}, "features", cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match=r"train\.csv:1: no column 'text' in the first row \['1', '"):
        finetune(cfg, tmp_path / "refused", model=make_encoder(), tokenizer=tokenizer, verbose=False)
    result = finetune(
        cfg,
        tmp_path / "run",
        ["--data.text_column=1", "--data.label_column=0"],
        model=make_encoder(),
        tokenizer=tokenizer,
        verbose=False,
    )
    assert result.model.labels == ["-1", "1"]
    assert result.metrics["n"] == 40  # every row of valid.csv, the first one too
    meta = json.loads((result.model_dir / "finetune.json").read_text())
    assert (meta["text_column"], meta["label_column"], meta["header"]) == (1, 0, "auto")

    out = tmp_path / "pred.jsonl"
    assert main(["predict", "--model", str(result.model_dir), "--data", str(valid), "-o", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    with open(valid, encoding="utf-8") as f:
        texts = [text for _, text in csv.reader(f)]
    assert [r["text"] for r in rows] == texts
    assert "40 rows: 40 predictions, 0 errors" in capsys.readouterr().err


def test_no_validation_split(tokenizer, make_encoder, topic_data, tmp_path, capsys):
    """`valid_fraction: 0.0` trains on every example, evaluates nothing, keeps the last model and says so."""
    cfg = config(topic_data, "head")
    del cfg["data"]["valid"]
    cfg["data"]["valid_fraction"] = 0.0
    cfg["train"]["epochs"] = 1
    result = finetune(cfg, tmp_path / "run", model=make_encoder(), tokenizer=tokenizer)
    printed = capsys.readouterr().out
    assert "no validation data (data.valid_fraction: 0 and no data.valid): the last model is kept" in printed
    assert "valid:" not in printed
    assert result.metrics == {} and result.summary()["valid"] == {}
    assert (result.model_dir / "model.safetensors").is_file() and not (result.out_dir / "eval").exists()
    assert json.loads((result.out_dir / "result.json").read_text())["valid"] == {}
    with open(tmp_path / "run" / "metrics.jsonl", encoding="utf-8") as f:
        logged = [json.loads(line) for line in f]
    assert [r["split"] for r in logged] == ["train"]  # the one train line at the last step; no evaluation
    with pytest.raises(ConfigError, match=r"train\.patience: early stopping needs validation data"):
        finetune(cfg, tmp_path / "patient", ["train.patience=2"], model=make_encoder(), tokenizer=tokenizer)
