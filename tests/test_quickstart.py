"""The quickstart (what `make demo` runs) end to end, at a smaller setting."""

import json

import damoxing
from damoxing.cli import main


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
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    for step in ("1/5", "2/5", "3/5", "4/5", "5/5"):
        assert f"== {step}" in printed
    assert "damoxing predict --model" in printed and "damoxing evaluate --model" in printed
    # every step's output under the one run folder
    assert (out / "tokenizer" / "tokenizer.json").is_file()
    assert list((out / "pretrain").glob("step-*/model.safetensors"))
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert metrics["n"] == 444 and 0.0 <= metrics["accuracy"] <= 1.0
    assert (out / "report" / "report.html").is_file() and (out / "report" / "confusion_matrix.png").is_file()
    # the fine-tuned model is a normal checkpoint that loads and classifies into the five topics
    model = damoxing.load(out / "finetune" / "model")
    assert model.config.head == "sequence" and model.config.num_labels == 5
