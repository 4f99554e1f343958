"""Evaluation reports: `metrics.json`, plots and a Markdown + HTML summary in one folder.

Every file is written atomically (temporary file, then rename), so an interrupted run never leaves
a half-written report. Plots are drawn on `matplotlib.figure.Figure` with the Agg canvas: no
pyplot global state and no display needed.
"""

from __future__ import annotations

import html
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # never open a window, even if pyplot is imported elsewhere later
from matplotlib.figure import Figure

from damoxing.atomic import atomic_open

ANNOTATE_MAX_CLASSES = 30  # above this the confusion matrix cells are too small for numbers


def write_report(
    metrics: dict[str, Any],
    out_dir: str | os.PathLike,
    class_names: list[str] | None = None,
    title: str = "Evaluation report",
) -> dict[str, Path]:
    """Write `metrics.json`, `report.md`, `report.html` and, for classification, the confusion-matrix
    and calibration plots into `out_dir`. `metrics` is a `compute()` result (extra scalar keys are
    shown in the headline table). Returns the written paths by name."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if class_names is None:
        class_names = metrics.get("class_names")
    paths = {"json": out_dir / "metrics.json"}
    with atomic_open(paths["json"], "w") as f:  # image thumbnails go into the grid below, not into the JSON
        json.dump({k: v for k, v in metrics.items() if k != "worst_images"}, f, indent=2, default=_json_default)
        f.write("\n")

    images: dict[str, str] = {}
    if "confusion_matrix" in metrics:
        names = class_names or [str(i) for i in range(len(metrics["confusion_matrix"]))]
        paths["confusion_matrix"] = out_dir / "confusion_matrix.png"
        _save(_confusion_figure(metrics["confusion_matrix"], names), paths["confusion_matrix"])
        images["Confusion matrix"] = paths["confusion_matrix"].name
    if metrics.get("calibration_bins"):
        paths["calibration"] = out_dir / "calibration.png"
        _save(_calibration_figure(metrics["calibration_bins"], metrics.get("ece")), paths["calibration"])
        images["Calibration (reliability diagram)"] = paths["calibration"].name
    shown = [
        (ex, im)
        for ex, im in zip(metrics.get("worst_examples", []), metrics.get("worst_images") or [])
        if im is not None
    ]
    if shown:
        paths["worst_images"] = out_dir / "worst_misclassified.png"
        _save(_worst_images_figure(shown), paths["worst_images"])
        images["Most confident mistakes (true / predicted, confidence)"] = paths["worst_images"].name

    sections = _sections(metrics, images)
    paths["markdown"] = out_dir / "report.md"
    with atomic_open(paths["markdown"], "w") as f:
        f.write(_markdown(title, sections))
    paths["html"] = out_dir / "report.html"
    with atomic_open(paths["html"], "w") as f:
        f.write(_html(title, sections))
    return paths


def _json_default(value: Any) -> Any:
    """Turn numpy and torch scalars (and small arrays) into plain Python values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to metrics.json")


# --- plots --------------------------------------------------------------------------------------


def _save(fig: Figure, path: Path) -> None:
    """Render `fig` to PNG bytes and write them atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    with atomic_open(path, "wb") as f:
        f.write(buffer.getvalue())


def _confusion_figure(matrix: list[list[int]], class_names: list[str]) -> Figure:
    """Counts heat map: rows are true classes, columns predicted classes."""
    n = len(matrix)
    size = min(4 + 0.45 * n, 20)
    fig = Figure(figsize=(size, size))
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix")
    if n <= ANNOTATE_MAX_CLASSES:
        ax.set_xticks(range(n), labels=class_names, rotation=45, ha="right")
        ax.set_yticks(range(n), labels=class_names)
        peak = max((max(row) for row in matrix), default=0)
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                color = "white" if peak and count > peak / 2 else "black"
                ax.text(j, i, str(count), ha="center", va="center", color=color, fontsize=8)
    return fig


def _calibration_figure(bins: list[dict[str, float]], ece: float | None) -> Figure:
    """Reliability diagram (accuracy per confidence bin vs the diagonal) over a count histogram."""
    fig = Figure(figsize=(5, 6))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    lefts = [b["lower"] for b in bins]
    widths = [b["upper"] - b["lower"] for b in bins]
    filled = [b for b in bins if b["count"]]
    top.bar(
        lefts,
        [b["accuracy"] for b in bins],
        width=widths,
        align="edge",
        edgecolor="black",
        color="tab:blue",
        label="accuracy",
    )
    top.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    top.plot(
        [b["confidence"] for b in filled],
        [b["accuracy"] for b in filled],
        "o",
        color="tab:red",
        markersize=4,
        label="mean confidence",
    )
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.set_title("Calibration" + (f" (ECE = {ece:.4f})" if ece is not None else ""))
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(lefts, [b["count"] for b in bins], width=widths, align="edge", edgecolor="black", color="gray")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence (max probability)")
    bottom.set_ylabel("examples")
    return fig


def _worst_images_figure(shown: list[tuple[dict, Any]], columns: int = 5) -> Figure:
    """A grid of the most confidently misclassified images, each titled true / predicted (confidence)."""
    columns = min(columns, len(shown))
    rows = math.ceil(len(shown) / columns)
    fig = Figure(figsize=(2.2 * columns, 2.5 * rows))
    for i, (example, image) in enumerate(shown):
        ax = fig.add_subplot(rows, columns, i + 1)
        grey = image.shape[2] == 1
        ax.imshow(image[:, :, 0] if grey else image, cmap="gray" if grey else None, vmin=0, vmax=255)
        ax.set_title(f"{example['true'][:14]} / {example['predicted'][:14]}\n{example['confidence']:.2f}", fontsize=8)
        ax.axis("off")
    fig.suptitle("Most confident mistakes: true / predicted")
    return fig


# --- text ---------------------------------------------------------------------------------------
# A report is a list of sections: (heading, kind, payload) with kind "table" (header, rows) or
# "images" ({caption: file name}). Both writers below render the same sections.


def _fmt(value: Any) -> str:
    """Numbers with 4 decimals, everything else as text."""
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else str(value)
    return "" if value is None else str(value)


def _sections(metrics: dict[str, Any], images: dict[str, str]) -> list[tuple[str, str, Any]]:
    headline = [
        [key, _fmt(value)]
        for key, value in metrics.items()
        if isinstance(value, (int, float, str)) and not isinstance(value, bool)
    ]
    sections: list[tuple[str, str, Any]] = [("Metrics", "table", (["metric", "value"], headline))]
    if metrics.get("per_class"):
        rows = [
            [row["class"], _fmt(row["precision"]), _fmt(row["recall"]), _fmt(row["f1"]), str(row["support"])]
            for row in metrics["per_class"]
        ]
        sections.append(("Per class", "table", (["class", "precision", "recall", "f1", "support"], rows)))
    if images:
        sections.append(("Plots", "images", images))
    if metrics.get("records_skipped"):
        rows = [[reason, str(n)] for reason, n in metrics["records_skipped"].items()]
        rows += [["example", _fmt(example)] for example in metrics.get("skipped_examples", [])]
        sections.append(("Skipped records", "table", (["reason", "records"], rows)))
    if "worst_examples" in metrics:
        rows = [
            [str(ex["index"]), _fmt(ex["text"]), ex["true"], ex["predicted"], _fmt(ex["confidence"])]
            for ex in metrics["worst_examples"]
        ]
        header = ["example", "text", "true", "predicted", "confidence"]
        sections.append(("Most confident mistakes", "table", (header, rows)))
    if metrics.get("bias"):
        sections += _bias_sections(metrics["bias"])
    if metrics.get("samples"):
        rows = [[s["source"], s["reference"], s["hypothesis"]] for s in metrics["samples"]]
        sections.append(("Sample translations", "table", (["source", "reference", "translation"], rows)))
    return sections


def _bias_sections(bias: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """The "Bias" section (evaluation/bias.py): one table per probe table, the verdict in the first heading."""
    from .bias import bias_tables

    verdict = "flagged" if bias["flagged"] else "not flagged"
    return [
        (f"Bias ({verdict}): {title}" if i == 0 else f"Bias: {title}", "table", (header, rows))
        for i, (title, header, rows) in enumerate(bias_tables(bias))
    ]


def _md_cell(text: str) -> str:
    """Escape HTML (Markdown renderers pass it through; quotes are safe outside attributes, and French text is
    full of apostrophes) and the characters that break a table row."""
    return html.escape(text, quote=False).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _markdown(title: str, sections: list[tuple[str, str, Any]]) -> str:
    lines = [f"# {_md_cell(title)}", ""]
    for heading, kind, payload in sections:
        lines += [f"## {heading}", ""]
        if kind == "images":
            lines += [f"![{caption}]({name})" for caption, name in payload.items()]
        else:
            header, rows = payload
            if not rows:
                lines.append("(none)")
            else:
                lines.append("| " + " | ".join(header) + " |")
                lines.append("|" + "---|" * len(header))
                lines += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in rows]
        lines.append("")
    return "\n".join(lines)


_STYLE = """body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; }
table { border-collapse: collapse; margin-bottom: 1em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
img { max-width: 100%; margin-right: 1em; vertical-align: top; }"""


def _html(title: str, sections: list[tuple[str, str, Any]]) -> str:
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    for heading, kind, payload in sections:
        parts.append(f"<h2>{esc(heading)}</h2>")
        if kind == "images":
            parts += [f'<img src="{esc(name)}" alt="{esc(caption)}">' for caption, name in payload.items()]
            continue
        header, rows = payload
        if not rows:
            parts.append("<p>(none)</p>")
            continue
        parts.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>" for row in rows]
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def add_section(out_dir: str | os.PathLike, heading: str, header: list[str], rows: list[list[str]], note: str) -> None:
    """Append a table section (with a paragraph above it) to an existing report.md and report.html."""
    out_dir = Path(out_dir)
    markdown = (out_dir / "report.md").read_text(encoding="utf-8").rstrip("\n")
    lines = [markdown, "", f"## {heading}", "", _md_cell(note), ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] if rows else ["(none)"]
    lines += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in rows]
    with atomic_open(out_dir / "report.md", "w") as f:
        f.write("\n".join(lines) + "\n")
    esc = html.escape
    parts = [f"<h2>{esc(heading)}</h2>", f"<p>{esc(note)}</p>"]
    if rows:
        parts.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>" for row in rows]
        parts.append("</table>")
    page = (out_dir / "report.html").read_text(encoding="utf-8")
    with atomic_open(out_dir / "report.html", "w") as f:
        f.write(page.replace("</body></html>", "\n".join(parts) + "\n</body></html>", 1))
