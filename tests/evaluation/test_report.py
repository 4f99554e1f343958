"""The report folder: metrics.json, the two plots, report.md and report.html."""

import json

import pytest
import torch

from damoxing.evaluation import ClassificationMetrics, RegressionMetrics, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EVIL = "<script>alert('x')</script> | pipe"


@pytest.fixture
def classification_result() -> dict:
    g = torch.Generator().manual_seed(0)
    metric = ClassificationMetrics(3, class_names=["negative", "neutral", "positive"], worst_k=5)
    for step in range(4):
        logits, targets = torch.randn(16, 3, generator=g) * 2, torch.randint(0, 3, (16,), generator=g)
        texts = [f"example {step}-{i}" for i in range(16)]
        metric.update(logits, targets, texts)
    metric.update(torch.tensor([[20.0, 0.0, 0.0]]), torch.tensor([2]), [EVIL])  # the most confident mistake
    return metric.compute()


def test_classification_report_files(tmp_path, classification_result):
    out = tmp_path / "report"
    paths = write_report(classification_result, out, title="Sentiment <eval>")
    assert sorted(p.name for p in out.iterdir()) == [
        "calibration.png",
        "confusion_matrix.png",
        "metrics.json",
        "report.html",
        "report.md",
    ]
    assert set(paths) == {"json", "confusion_matrix", "calibration", "markdown", "html"}

    loaded = json.loads((out / "metrics.json").read_text())
    assert loaded == classification_result  # round-trips every number exactly

    for name in ("confusion_matrix.png", "calibration.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, name

    markdown = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    for row in classification_result["per_class"]:
        assert (
            f"| {row['class']} | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1']:.4f} | {row['support']} |"
            in markdown
        )
        assert f"<td>{row['class']}</td><td>{row['precision']:.4f}</td>" in page
    assert f"| accuracy | {classification_result['accuracy']:.4f} |" in markdown
    assert "![Confusion matrix](confusion_matrix.png)" in markdown
    assert '<img src="calibration.png"' in page and '<img src="confusion_matrix.png"' in page
    # The example text is escaped in both reports (and its pipe cannot break the Markdown table).
    assert "<script>" not in markdown and "<script>" not in page
    assert "&lt;script&gt;alert('x')&lt;/script&gt; \\| pipe" in markdown
    assert "<td>&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; | pipe</td>" in page
    assert "<title>Sentiment &lt;eval&gt;</title>" in page
    assert classification_result["worst_examples"][0]["text"] == EVIL


def test_rewriting_a_report_leaves_no_temporary_files(tmp_path, classification_result):
    write_report(classification_result, tmp_path)
    changed = dict(classification_result, accuracy=0.125)
    write_report(changed, tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text())["accuracy"] == 0.125
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_regression_report_has_json_and_tables_without_plots(tmp_path):
    metric = RegressionMetrics()
    metric.update(torch.tensor([1.0, 2.0, 3.5, 4.0]), torch.tensor([1.2, 1.9, 3.0, 4.4]))
    result = metric.compute()
    write_report(result, tmp_path, title="STS-B")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "report.html", "report.md"]
    assert json.loads((tmp_path / "metrics.json").read_text()) == result
    markdown = (tmp_path / "report.md").read_text()
    for key in ("mse", "rmse", "mae", "r2", "pearson", "spearman"):
        assert f"| {key} | {result[key]:.4f} |" in markdown
    assert f"<td>pearson</td><td>{result['pearson']:.4f}</td>" in (tmp_path / "report.html").read_text()
