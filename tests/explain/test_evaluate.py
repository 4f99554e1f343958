"""`damoxing evaluate --explain N`: the attributions of the N most confident mistakes in the report."""

from __future__ import annotations

import json
import re

from damoxing.cli import main


def test_evaluate_explain_adds_the_worst_mistakes(tiny_classifier, tmp_path, capsys):
    data = tiny_classifier["folder"] / "flipped.csv"  # every label flipped: the model's answers are mistakes
    rows = tiny_classifier["valid"].read_text(encoding="utf-8").splitlines()
    flip = {"pos": "neg", "neg": "pos"}
    data.write_text(
        "\n".join([rows[0]] + [f"{r.rsplit(',', 1)[0]},{flip[r.rsplit(',', 1)[1]]}" for r in rows[1:]]) + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "report"
    argv = ["evaluate", "--model", str(tiny_classifier["model"]), "--data", str(data), "--out", str(out)]
    assert main([*argv, "--explain", "3", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    worst = metrics["worst_examples"][:3]
    report = (out / "report.md").read_text(encoding="utf-8")
    section = report.split("## Explanations of the most confident mistakes", 1)[1]
    table = [line for line in section.splitlines() if re.match(r"\| \d+ \|", line)]
    assert [line.split(" | ")[0].strip("| ") for line in table] == [str(ex["index"]) for ex in worst]
    assert "explanations.html" in section
    assert "Explanations of the most confident mistakes" in (out / "report.html").read_text(encoding="utf-8")
    page = (out / "explanations.html").read_text(encoding="utf-8")
    assert page.count('<section class="item"') == 3
    for ex in worst:
        assert f"true {ex['true']}, predicted {ex['predicted']}" in page
