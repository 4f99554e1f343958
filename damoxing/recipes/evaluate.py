"""`damoxing evaluate` and `damoxing predict`: a saved model folder + a data file -> a report, or predictions.

    metrics = evaluate_model("runs/x/model", "data/test.csv.gz", out_dir="runs/x/eval")
    for row in predict("runs/x/model", texts=["great phone", "broke in a day"]): ...

A fine-tuned folder says its task in finetune.json (a plain Hugging Face classification folder is read
from its head); a language model (an `lm` head) is evaluated with the `clm` task: loss and perplexity.
Files are read lazily and batch by batch: memory does not grow with the file. Bad input (a malformed
row, a label the model does not know, an empty file) is a DataError naming the file and line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..data.processors import load_processor
from ..data.readers import ReadSummary
from ..errors import DataError, UserError
from ..evaluation.evaluate import evaluate_records
from ..evaluation.report import write_report
from ..inference.predict import predict_records
from ..io.checkpoint import load_model
from ..io.finetuned import finetuned_meta, load_finetuned, read_meta
from ..models import family_of
from ..tasks import get_task


def load_for_evaluation(model_dir):
    """A saved folder -> (model, tokenizer or image processor, meta). Without finetune.json a language model gets
    the clm task, and an encoder-decoder (T5, Marian) the translation task (columns `source`, `target`)."""
    model, tokenizer = load_model(model_dir), load_processor(model_dir)
    if model.config.head == get_task("clm").head and "task" not in read_meta(model_dir):
        limit = min(tokenizer.model_max_length or 1024, model.config.max_positions)
        if family_of(model.config) == get_task("translation").family:
            return (
                model,
                tokenizer,
                {
                    "task": "translation",
                    "source_column": "source",
                    "target_column": "target",
                    "max_length": limit,
                    "labels": [],
                },
            )
        return model, tokenizer, {"task": "clm", "text_column": "text", "max_length": limit, "labels": []}
    return model, tokenizer, finetuned_meta(model, tokenizer, model_dir)


def evaluate_model(
    model_dir: str | os.PathLike,
    data: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    batch_size: int = 64,
    max_length: int | None = None,
    skip_bad: bool = False,
    worst_k: int = 20,
    columns: dict | None = None,
    explain: int = 0,
    bias: bool = False,
) -> dict:
    """Load a model folder, evaluate it on `data`, and write a report into `out_dir` (if given).

    `explain` > 0 adds the attributions of that many most confident mistakes to the report (recipes/explain.py).
    `columns` overrides the columns saved with the model (text_column, text_pair_column, label_column: names,
    or positions from 0) and `header` (auto | true | false: whether a CSV's first row names its columns).
    Records skipped with `skip_bad` are counted, by reason, in `records_skipped` (and `skipped_examples`).
    `bias`: add the model's bias probe (recipes/bias.py) on the same data as `metrics["bias"]`.
    """
    data = Path(data)
    if not data.exists():
        raise DataError(f"{data}: no such file or folder")
    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise UserError(f"{out_dir}: a file is in the way of the report folder; remove it or choose another --out")
    model, tokenizer, meta = load_for_evaluation(model_dir)
    meta.update({k: v for k, v in (columns or {}).items() if v is not None})
    if max_length:
        meta["max_length"] = max_length
    task = get_task(meta["task"]).configure(meta)
    summary = ReadSummary()
    records = task.read(data, meta, labels=task.known_labels(meta["labels"]), skip_bad=skip_bad, summary=summary)
    worst_k = max(worst_k, explain)
    metrics = evaluate_records(model, tokenizer, task, records, meta["labels"], meta["max_length"], batch_size, worst_k)
    read = summary.as_dict()
    metrics = {
        "model": str(model_dir),
        "data": str(data),
        **metrics,
        "records_skipped": read["skipped"],
        "skipped_total": read["skipped_total"],
        "skipped_examples": read["skipped_examples"],
    }
    if bias:
        metrics["bias"] = _bias_probe(model, tokenizer, model_dir, data, meta, batch_size)
    if out_dir is not None:  # images: with a grid of the most confidently misclassified ones
        write_report(metrics, out_dir, title=f"Evaluation of {Path(model_dir).name} on {data.name}")
        if explain:
            from .explain import explain_mistakes

            explain_mistakes(model, tokenizer, task, meta, data, metrics, out_dir, explain, skip_bad)
    metrics.pop("worst_images", None)  # thumbnails: drawn in the report, not JSON
    return metrics


def _bias_probe(model, tokenizer, model_dir, data, meta, batch_size) -> dict:
    """`evaluate --bias`: a classifier is probed on the evaluation texts, a language model on the bundled pairs."""
    from .bias import probe_loaded

    on_data = data if model.config.head == "sequence" else None  # language models: the bundled sentence pairs
    return probe_loaded(model, tokenizer, model_dir, on_data, meta=meta, batch_size=batch_size)


def input_records(
    task,
    meta: dict,
    texts: Sequence[str] | None = None,
    data: str | os.PathLike | None = None,
    skip_bad: bool = False,
    summary: ReadSummary | None = None,
) -> Iterator[dict]:
    """Unlabelled records from command-line texts or a file (lazily), one per input row; a label column, if
    any, is ignored. Files skipped with `skip_bad` (an empty file has no row) are counted in `summary`."""
    if (texts is None) == (data is None):
        raise UserError("give either texts or a data file to predict, not both")
    if texts is not None:
        if not texts:
            raise UserError("nothing to predict: give one or more texts, or --data FILE")
        return task.inputs(texts)
    path = Path(data)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    return task.read(path, meta, skip_bad=skip_bad, with_labels=False, summary=summary)


def predict(
    model_dir: str | os.PathLike,
    texts: Sequence[str] | None = None,
    data: str | os.PathLike | None = None,
    *,
    batch_size: int = 64,
    skip_bad: bool = False,
    loaded=None,
    summary: ReadSummary | None = None,
    columns: dict | None = None,
    keep_columns: Sequence[str | int] = (),
) -> Iterator[dict]:
    """Predictions for `texts` or the records of `data`, lazily: one row per input row, in order, an empty or
    (with `skip_bad`) bad one with `error` set. `loaded` = (model, tokenizer, meta) to reuse.

    `columns` overrides the columns and header saved with the model, as in `evaluate_model`. Each row of a
    file starts with its `id` column, if it has one, and the `keep_columns` (names or positions)."""
    model, tokenizer, meta = loaded if loaded is not None else load_finetuned(model_dir)
    meta = {**meta, **{k: v for k, v in (columns or {}).items() if v is not None}}
    meta["keep_columns"] = list(keep_columns)
    task = get_task(meta["task"]).configure(meta)
    records = input_records(task, meta, texts, data, skip_bad, summary)
    return predict_records(model, tokenizer, task, records, meta["labels"], meta.get("max_length"), batch_size)
