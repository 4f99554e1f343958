"""`damoxing bias MODEL [--data FILE] [--out DIR]` and `damoxing evaluate --bias`: the bias probe a model's head
calls for (see damoxing/evaluation/bias.py).

    result = probe_bias("runs/x/model", data="test.csv", out_dir="runs/x/bias")

- a classifier (a `sequence` head fine-tuned for `classification`): counterfactual swaps in the texts of `data`
  (a column named as in training, default `text`; or a .txt file, one text a line); without `data`, in the
  bundled template sentences of the language;
- a masked LM (`mlm` or `pretraining` head): pseudo-log-likelihood preference on sentence pairs;
- a causal LM (a decoder with an `lm` head): log-likelihood gap on sentence pairs.
Sentence pairs are the bundled ones of the language, or `data`: a file with columns `stereotyped` and `other`.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..data.processors import load_processor
from ..data.readers import read_records
from ..errors import ConfigError, DataError, UserError
from ..evaluation.bias import (
    BOOTSTRAP,
    SentencePair,
    causal_lm_probe,
    classifier_probabilities,
    counterfactual_probe,
    detect_language,
    load_lists,
    masked_lm_probe,
    sentence_pairs,
)
from ..evaluation.report import write_report
from ..io.checkpoint import load_model
from ..io.finetuned import finetuned_meta
from ..models import family_of
from ..tasks import get_task

MASKED_HEADS = ("mlm", "pretraining")
TEXT_FAMILIES = ("encoder", "decoder")


def probe_kind(model, model_dir) -> str:
    """ "counterfactual", "pseudo_log_likelihood" (masked LMs) or "log_likelihood" (causal LMs) from the model's head; a UserError for any other model."""
    head = model.config.head
    if head in MASKED_HEADS:
        return "pseudo_log_likelihood"
    if head == "lm" and family_of(model.config) == "decoder":
        return "log_likelihood"
    if head == "sequence":
        return "counterfactual"
    raise UserError(
        f"{model_dir}: the model has a {head!r} head ({family_of(model.config)}); bias probes need a text "
        "classifier (a 'sequence' head: damoxing finetune), a masked LM ('mlm' head) or a causal LM ('lm' head)"
    )


def read_pairs(path: Path) -> list[SentencePair]:
    """Sentence pairs from a file with columns `stereotyped` and `other` (.csv, .tsv, .jsonl; optionally .gz)."""
    pairs = [
        SentencePair("data", r["text_a"], r["text_b"])
        for r in read_records(path, text_column="stereotyped", text_pair_column="other")
    ]
    if not pairs:
        raise DataError(f"{path}: no sentence pairs (columns 'stereotyped' and 'other'); add some rows")
    return pairs


def read_texts(path: Path, task, meta: dict) -> list[str]:
    texts = [r["text"] for r in task.read(path, meta, with_labels=False) if r.get("text", "").strip()]
    if not texts:
        raise DataError(f"{path}: no texts to probe (column {meta['text_column']!r}); add some rows")
    return texts


def probe_loaded(
    model,
    tokenizer,
    model_dir,
    data: str | os.PathLike | None = None,
    *,
    meta: dict | None = None,
    language: str | None = None,
    n_boot: int = BOOTSTRAP,
    seed: int = 0,
    batch_size: int = 32,
) -> dict:
    """The probe of a loaded model (and, for classifiers, its finetune meta) on `data` or the bundled lists."""
    if n_boot < 1:
        raise ConfigError(f"bootstrap: {n_boot} resamples; give at least 1 (1000 is usual)")
    kind = probe_kind(model, model_dir)
    path = Path(data) if data is not None else None
    if path is not None and not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if kind == "counterfactual":
        meta = meta if meta is not None else finetuned_meta(model, tokenizer, model_dir)
        task = get_task(meta["task"]).configure(meta)
        # a classifier's features method fits a logistic probe; regression fits ridge; pair tasks read two texts
        if task.linear_probe != "logistic" or task.pairs or meta.get("text_pair_column"):
            raise UserError(
                f"{model_dir}: a {meta['task']!r} model; the counterfactual probe needs a single-text classifier"
            )
        texts = read_texts(path, task, meta) if path is not None else None
        lists = load_lists(language or (detect_language(texts) if texts else "en"))
        if texts is None:
            texts = [p.stereotyped for p in sentence_pairs(lists)]
        probabilities = classifier_probabilities(model, tokenizer, task, meta.get("max_length"), batch_size)
        result = counterfactual_probe(probabilities, texts, lists, meta["labels"], n_boot=n_boot, seed=seed)
    else:
        lists = load_lists(language or "en")  # an unknown language fails here, before any scoring
        pairs = read_pairs(path) if path is not None else sentence_pairs(lists)
        if kind == "pseudo_log_likelihood":
            result = masked_lm_probe(model, tokenizer, pairs, n_boot=n_boot, seed=seed)
        else:
            result = causal_lm_probe(model, tokenizer, pairs, n_boot=n_boot, seed=seed)
        result["language"] = lists.language if path is None else "data"
    result["data"] = str(path) if path is not None else f"bundled ({result['language']})"
    return result


def probe_bias(
    model_dir: str | os.PathLike,
    data: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    *,
    language: str | None = None,
    n_boot: int = BOOTSTRAP,
    seed: int = 0,
    batch_size: int = 32,
) -> dict:
    """Load a model folder (or GGUF file), run its probe, and write metrics.json + report.md/.html into `out_dir`."""
    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise UserError(f"{out_dir}: a file is in the way of the report folder; remove it or choose another --out")
    model, tokenizer = load_model(model_dir), load_processor(model_dir)
    result = probe_loaded(
        model, tokenizer, model_dir, data, language=language, n_boot=n_boot, seed=seed, batch_size=batch_size
    )
    report = {"model": str(model_dir), "probe": result["probe"], "flagged": result["flagged"], "bias": result}
    if out_dir is not None:
        write_report(report, out_dir, title=f"Bias probes of {Path(model_dir).name}")
    return report
