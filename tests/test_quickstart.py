"""The quickstart (what `make demo` runs) end to end, at a smaller setting: English, and Chinese (slow)."""

import json
from pathlib import Path

import pytest
import yaml

import damoxing
from damoxing.cli import main
from damoxing.io.checkpoint import load_model
from damoxing.recipes.lesson import weights_digest

ROWS = ("pretrained, then fine-tuned", "same model from scratch (no pretraining)", "char 1-3-gram")


def check_comparison(out, seeds: int, minilm: bool) -> dict:
    """The table has its rows, and the pretrained row starts from the checkpoint's weights, the scratch row not."""
    comparison = json.loads((out / "comparison.json").read_text())
    names = [r["name"] for r in comparison["rows"]]
    assert len(names) == 3 + minilm and all(name.startswith(row) for name, row in zip(names, ROWS))
    assert minilm == any("MiniLM" in name for name in names)
    for row in comparison["rows"][:3]:
        assert len(row["accuracies"]) == seeds and all(0.0 <= a <= 1.0 for a in row["accuracies"])
    pretrained, scratch = comparison["rows"][0], comparison["rows"][1]
    checkpoint = weights_digest(load_model(comparison["checkpoint"]))
    assert pretrained["start_digests"] == [checkpoint] * seeds  # fine-tuning starts from the pretrained weights
    assert checkpoint not in scratch["start_digests"] and len(set(scratch["start_digests"])) == seeds
    table = (out / "comparison.md").read_text(encoding="utf-8")
    assert all(row in table for row in ROWS)
    return comparison


def test_quickstart_end_to_end(tmp_path, minilm_dir, capsys):
    out = tmp_path / "qs"
    code = main(
        [
            "quickstart",
            "--out",
            str(out),
            "--model",
            str(minilm_dir),
            "--pretrain-minutes",
            "0.05",
            "--finetune-examples",
            "60",
            "--max-length",
            "32",
            "--epochs",
            "1",
            "--seeds",
            "1",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    for step in ("1/5", "2/5", "3/5", "4/5", "5/5"):
        assert f"== {step}" in printed
    assert "damoxing predict --model" in printed and "damoxing evaluate --model" in printed
    assert "| pretrained, then fine-tuned |" in printed  # the table is printed
    # every step's output under the one run folder
    assert (out / "tokenizer" / "tokenizer.json").is_file()
    checkpoints = list((out / "pretrain").glob("step-*/model.safetensors"))
    assert checkpoints
    # pretraining read the plays and the training articles' text, never the test split
    pretraining = yaml.safe_load((checkpoints[-1].parent / "config.yaml").read_text())
    read = [Path(p) for p in pretraining["data"]["train"]]
    assert read == [damoxing.data.bundled_path("shakespeare"), damoxing.data.bundled_path("bbc_news", "train")]
    assert pretraining["train"]["task"] == "masked_lm"
    check_comparison(out, seeds=1, minilm=True)
    # the tiny BERT rows' heads read the mean of the tokens; MiniLM keeps its own pooler (finetune.json says)
    for run, pooling in (("pretrained-seed0", "mean"), ("scratch-seed0", "mean"), ("minilm-seed0", "pooler")):
        assert json.loads((out / "finetune" / run / "model" / "finetune.json").read_text())["pooling"] == pooling
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert metrics["n"] == 444 and 0.0 <= metrics["accuracy"] <= 1.0
    assert (out / "report" / "report.html").is_file() and (out / "report" / "confusion_matrix.png").is_file()
    # the fine-tuned MiniLM is a normal checkpoint that loads and classifies into the five topics
    model = damoxing.load(out / "finetune" / "minilm-seed0" / "model")
    assert model.config.head == "sequence" and model.config.num_labels == 5


@pytest.mark.slow
def test_quickstart_chinese_end_to_end(tmp_path, capsys):
    out = tmp_path / "qs-zh"
    args = ["quickstart", "--lang", "zh", "--out", str(out), "--corpus-chars", "20000", "--pretrain-minutes", "0.05"]
    args += ["--finetune-examples", "100", "--max-length", "32", "--epochs", "1", "--seeds", "2"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    for step in ("1/5", "2/5", "3/5", "4/5", "5/5"):
        assert f"== {step}" in printed
    assert "房 间 很 干 净 ， 服 务 也 很 周 到 ！" in printed  # one character per token, punctuation kept
    corpus = (out / "corpus" / "corpus.txt").read_text(encoding="utf-8").splitlines()
    test_reviews = {
        r["text"] for r in damoxing.data.read_records(str(damoxing.data.bundled_path("zh_sentiment", "test")))
    }
    assert corpus and not test_reviews & set(corpus)  # no test review in the pretraining text
    check_comparison(out, seeds=2, minilm=False)
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert metrics["n"] == 1200 and sorted(metrics["class_names"]) == ["negative", "positive"]


def test_the_lesson_says_what_the_table_shows_either_way():
    from damoxing.recipes.lesson import Row, verdict

    helped = [Row("pretrained", [0.90, 0.91, 0.92]), Row("scratch", [0.70, 0.72, 0.71])]
    assert verdict(helped).startswith("Pretraining helped: 0.910 against 0.710")
    noise = [Row("pretrained", [0.43, 0.40, 0.51]), Row("scratch", [0.52, 0.44, 0.44])]
    assert "did NOT help" in verdict(noise) and "gap -0.020" in verdict(noise)
    close = [Row("pretrained", [0.80, 0.70]), Row("scratch", [0.70, 0.71])]  # gap 0.045 < spread 0.071
    assert "did NOT help" in verdict(close)
