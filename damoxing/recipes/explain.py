"""`damoxing explain` and `damoxing evaluate --explain N`: explanation pages of a model's predictions.

    page = explain("runs/x/model", texts=["great phone"], out="runs/x/explain")  # -> runs/x/explain/explanation.html
    page = explain("runs/x/model", data="test.csv", rows=5, out="runs/x/explain")  # the first 5 rows of a file

A text classifier (a fine-tuned folder) is explained for its predicted class, a causal language model for the
next token it predicts. Each text gets its Integrated Gradients attribution (with captum's delta), the attention
maps of every layer and head, and the attention rollout. A text typed on the command line that is longer than
the model reads is refused; rows of a file (and evaluation mistakes) are cut to that length, with a note.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..atomic import atomic_open
from ..data.images import read_images
from ..data.processors import ImageProcessor, load_processor
from ..data.readers import read_records
from ..errors import DataError, UserError
from ..explain.attention import recording, rollout
from ..explain.attribution import attribute_image, attribute_text, text_kind
from ..explain.page import Explanation, render_page
from ..io.checkpoint import load_model
from ..io.finetuned import finetuned_meta, read_meta
from ..models import Decoder, Encoder, ViT
from ..tasks import get_task
from ..tasks.classification import Classification, is_text_file

PAGE = "explanation.html"
DEFAULT_STEPS = 50


def load_for_explanation(model_dir: str | os.PathLike):
    """(model, tokenizer or image processor, labels, max_length) of a text or image classifier, or a causal LM."""
    model = load_model(model_dir)
    processor = load_processor(model_dir)
    if isinstance(processor, ImageProcessor):
        if getattr(model.config, "head", None) != "sequence":
            raise UserError(f"{model_dir}: image explanations need an image classifier (fine-tune one first)")
        return model, processor, finetuned_meta(model, processor, model_dir)["labels"], None
    if not isinstance(model, (Encoder, Decoder)):
        raise UserError(f"{model_dir}: a {type(model).__name__} model; explain reads text classifiers and causal LMs")
    kind = text_kind(model)  # a bare encoder (no head) stops here, with the message
    tokenizer = processor
    if kind == "next-token":  # a language model: no labels, and the tokenizer's (or the positions') length
        return model, tokenizer, [], None
    meta = finetuned_meta(model, tokenizer, model_dir)
    if not reads_one_text_to_a_label(get_task(meta["task"])):
        raise UserError(f"{model_dir}: a {meta['task']} model; explain reads text classifiers and causal LMs")
    return model, tokenizer, meta["labels"], meta.get("max_length")


def reads_one_text_to_a_label(task) -> bool:
    """A classifier of single texts (not a sentence pair, regression or token task: their outputs differ)."""
    return type(task) is Classification


def explain_text(
    model,
    tokenizer,
    text: str,
    *,
    heading: str,
    labels: list[str] | None = None,
    n_steps: int = DEFAULT_STEPS,
    max_length: int | None = None,
    cut: bool = False,
    attention: bool = True,
) -> Explanation:
    """The attribution of one text and, with `attention`, its attention maps and rollout."""
    a = attribute_text(model, tokenizer, text, labels=labels, n_steps=n_steps, max_length=max_length, cut=cut)
    e = Explanation(heading=heading, text=text, attribution=a)
    if attention:
        ids = torch.tensor([a.ids], device=model.device)  # (1, T)
        with torch.no_grad(), recording(model) as maps:
            model.forward_features(ids, torch.ones_like(ids))
        stacks = maps.stacks
        e.attention = {name: [m[0].float().cpu().numpy() for m in layers] for name, layers in stacks.items()}
        e.rollout = rollout([m[0].double() for m in stacks["self"]]).cpu().numpy()  # (T, T)
        e.rollout_row = 0 if isinstance(model, Encoder) else len(a.ids) - 1  # [CLS], or the last token
    return e


def explain_image(model, processor: ImageProcessor, record: dict, *, heading: str, labels, n_steps: int):
    """Integrated Gradients of one image record's pixels and, for a ViT, its attention maps and rollout."""
    pixels = processor.pixels([record]).to(device=model.device, dtype=next(model.parameters()).dtype)
    e = Explanation(heading=heading, text=str(record.get("source", "")), image=processor.view(record))
    e.image_attribution = attribute_image(model, pixels, labels=labels, n_steps=n_steps)
    if isinstance(model, ViT):
        with torch.no_grad(), recording(model) as maps:
            model.forward_features(pixels)
        layers = maps.stacks["self"]
        e.attention = {"self": [m[0].float().cpu().numpy() for m in layers]}
        e.rollout = rollout([m[0].double() for m in layers]).cpu().numpy()  # (1 + N, 1 + N)
    return e


def image_items(model, processor, texts, data, rows: int, labels, n_steps: int) -> list[Explanation]:
    """Image files given as texts, or the first `rows` images of a file or folder."""
    paths = [Path(t) for t in texts] if texts is not None else [Path(data)]
    for path in paths:
        if not path.exists():
            raise DataError(f"{path}: no such image file or folder")
    records = []
    for record in read_images(paths, with_labels=False):
        records.append(record)
        if texts is None and len(records) == rows:
            break
    return [
        explain_image(model, processor, r, heading=f"Image {i}: {r.get('source', '')}", labels=labels, n_steps=n_steps)
        for i, r in enumerate(records, 1)
    ]


def file_texts(data: str | os.PathLike, text_column: str, rows: int) -> list[str]:
    """The first `rows` texts of a file (.txt: one per line)."""
    path = Path(data)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    mode = "line" if is_text_file(path) else None
    texts = []
    for record in read_records(path, text_column=text_column, text_mode=mode, keep_blank=True):
        texts.append(record.get("text", ""))
        if len(texts) == rows:
            break
    if not texts:
        raise DataError(f"{path}: no rows to explain")
    return texts


def explain(
    model_dir: str | os.PathLike,
    texts: list[str] | None = None,
    data: str | os.PathLike | None = None,
    *,
    out: str | os.PathLike = "explanations",
    rows: int = 5,
    text_column: str | None = None,
    n_steps: int = DEFAULT_STEPS,
    max_length: int | None = None,
) -> Path:
    """Write OUT/explanation.html for `texts`, or the first `rows` rows of `data`; returns the page's path."""
    if (texts is None) == (data is None):
        raise UserError("give a text to explain, or --file FILE (not both)")
    if rows < 1:
        raise UserError(f"--rows must be at least 1, not {rows}")
    if n_steps < 2 or n_steps > 1000:
        raise UserError(f"--steps must be between 2 and 1000, not {n_steps}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: a file is in the way of the output folder; remove it or choose another --out")
    model, tokenizer, labels, trained_length = load_for_explanation(model_dir)
    limit = max_length or trained_length
    items = []
    if isinstance(tokenizer, ImageProcessor):
        items = image_items(model, tokenizer, texts, data, rows, labels, n_steps)
    elif texts is not None:
        for i, text in enumerate(texts, 1):
            heading = f"Text {i}" if len(texts) > 1 else "Text"
            items.append(
                explain_text(model, tokenizer, text, heading=heading, labels=labels, n_steps=n_steps, max_length=limit)
            )
    else:
        column = text_column or read_meta(model_dir).get("text_column") or "text"
        for i, text in enumerate(file_texts(data, column, rows), 1):
            if not text.strip():
                items.append(Explanation(heading=f"Row {i}", text=text, error="the row is empty"))
                continue
            items.append(
                explain_text(
                    model,
                    tokenizer,
                    text,
                    heading=f"Row {i}",
                    labels=labels,
                    n_steps=n_steps,
                    max_length=limit,
                    cut=True,
                )
            )
    html = render_page(
        items,
        title=f"Explanations of {Path(model_dir).name}",
        model=str(model_dir),
        n_steps=n_steps,
        method="gausslegendre",
        specials=getattr(tokenizer, "special_ids", set()),
    )
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / PAGE, "w") as f:
        f.write(html)
    return out / PAGE


def explain_mistakes(model, tokenizer, task, meta: dict, data, metrics: dict, out_dir, n: int, skip_bad: bool) -> Path:
    """evaluate --explain N: explain the N most confident mistakes (for the class predicted), write
    OUT/explanations.html, and add a section to report.md and report.html."""
    from ..evaluation.report import add_section

    if n < 0:
        raise UserError(f"--explain must be 0 or more, not {n}")
    out_dir = Path(out_dir)
    heading = "Explanations of the most confident mistakes"
    if not reads_one_text_to_a_label(task):
        add_section(out_dir, heading, [], [], f"not explained: explanations cover text classifiers, not {task.name}")
        return out_dir / "report.md"
    worst = {ex["index"]: ex for ex in metrics.get("worst_examples", [])[:n]}
    records = {}  # the report keeps 300 characters of a text: read the mistakes again, whole
    labels = task.known_labels(meta["labels"])
    for i, record in enumerate(task.read(data, meta, labels=labels, skip_bad=skip_bad)):
        if i in worst:
            records[i] = record
            if len(records) == len(worst):
                break
    items, rows = [], []
    for index, ex in worst.items():
        record = records.get(index, {})
        heading_i = f"Example {index}: true {ex['true']}, predicted {ex['predicted']} ({ex['confidence']:.3f})"
        if "text" not in record:
            items.append(Explanation(heading=heading_i, text="", error="sentence pairs are not explained yet"))
            continue
        e = explain_text(
            model,
            tokenizer,
            record["text"],
            heading=heading_i,
            labels=meta["labels"],
            max_length=meta.get("max_length"),
            cut=True,
        )
        items.append(e)
        a = e.attribution
        top = sorted(range(len(a.scores)), key=lambda j: -abs(a.scores[j]))[:5]
        tokens = ", ".join(f"{a.tokens[j]} ({a.scores[j]:+.3f})" for j in top)
        rows.append([str(index), ex["true"], ex["predicted"], f"{ex['confidence']:.4f}", tokens, f"{a.delta:.2g}"])
    page = out_dir / "explanations.html"
    html = render_page(
        items,
        title=heading,
        model=str(metrics.get("model", "")),
        n_steps=DEFAULT_STEPS,
        method="gausslegendre",
        specials=tokenizer.special_ids,
    )
    with atomic_open(page, "w") as f:
        f.write(html)
    note = (
        f"Integrated Gradients of the predicted class ({DEFAULT_STEPS} steps); the tokens that moved it most, "
        f"with their scores; every map and the attention rollout in {page.name}."
    )
    header = ["example", "true", "predicted", "confidence", "tokens that decided (score)", "captum delta"]
    add_section(out_dir, heading, header, rows, note)
    return page
