"""The tutorials' lesson, measured: pretraining is what makes fine-tuning work.

`compare(...)` fine-tunes, on one train/test split with one budget and the same seeds,
    pretrained   a pretrained encoder (a `damoxing pretrain` checkpoint) with a new classification head;
    scratch      the same architecture and tokenizer from random initialisation: no pretraining;
    char n-gram  character 1-3-gram TF-IDF + logistic regression (scikit-learn), the classic baseline;
    MiniLM       (optional) the real pretrained all-MiniLM-L6-v2, for English;
and returns one row per method: test accuracy per seed, mean and spread (sample standard deviation).
Each neural row also records a digest of its encoder weights at the start of fine-tuning, so the pretrained
and the scratch rows are seen to start from different weights. `table(rows)` renders them as Markdown.
"""

from __future__ import annotations

import hashlib
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.readers import read_records
from ..errors import CheckpointError
from ..io.checkpoint import load_model
from ..models import create_model
from ..tokenizer import Tokenizer
from .finetune import finetune


@dataclass
class Row:
    name: str
    accuracies: list[float] = field(default_factory=list)  # test accuracy, one per seed
    start_digests: list[str] = field(default_factory=list)  # encoder weights when fine-tuning starts
    seconds: float = 0.0

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies)

    @property
    def spread(self) -> float:
        return statistics.stdev(self.accuracies) if len(self.accuracies) > 1 else 0.0

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "accuracies": self.accuracies,
            "mean": self.mean,
            "spread": self.spread,
            "start_digests": self.start_digests,
            "seconds": round(self.seconds, 1),
        }


def weights_digest(model: torch.nn.Module) -> str:
    """A short hash of the encoder's parameters: all but the head's and the pooler's (new in fine-tuning)."""
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        if not name.startswith(("head.", "pooler.")):
            h.update(name.encode())
            h.update(p.detach().to(torch.float64).cpu().numpy().tobytes())
    return h.hexdigest()[:12]


def start_model(pretrained: str | Path, seed: int, fresh: bool) -> torch.nn.Module:
    """The model fine-tuning starts from: the architecture of the checkpoint `pretrained`, randomly initialised
    with `seed`, then (unless `fresh`, the scratch row) given the checkpoint's weights. A masked-LM checkpoint
    has no pooler (BERT's dense + tanh over [CLS]); fine-tuning's sequence head brings a new one
    (`Encoder.reset_head`), in both rows alike."""
    checkpoint = load_model(pretrained)
    torch.manual_seed(seed)
    model = create_model(checkpoint.config)
    if not fresh:
        missing, unexpected = model.load_state_dict(checkpoint.state_dict(), strict=False)
        if missing or unexpected:
            raise CheckpointError(f"{pretrained}: weights do not fit the model ({(missing + unexpected)[:3]}...)")
    return model


def finetune_run(model, tokenizer, train: Path, test: Path, out: Path, seed: int, settings: dict) -> float:
    """Full fine-tuning of `model` (changed in place) on `train`; its test accuracy. settings["pooling"] (cls,
    mean, pooler), when given, chooses what the new head sees; otherwise the model's own pooling."""
    pooling = settings.get("pooling")
    config = {
        "data": {
            "train": [str(train)],
            "test": [str(test)],
            "max_length": settings["max_length"],
            "max_train_examples": settings.get("max_train_examples", 0),
            "valid_fraction": 0.1,
        },
        "finetune": {"method": "full", "task": "sequence", **({"pooling": pooling} if pooling else {})},
        "train": {
            "lr": settings["lr"],
            "epochs": settings["epochs"],
            "batch_size": settings["batch_size"],
            "seed": seed,
            "precision": "fp32",
            "warmup_steps": 20,
            "schedule": "linear",
            "eval_every": 100000,
            "log_every": 100000,
        },
    }
    result = finetune(config, out, model=model, tokenizer=tokenizer, config_name=out.name, verbose=False, force=True)
    return float(result.test_metrics["accuracy"])


def ngram_accuracy(train: Path, test: Path, seed: int, max_train_examples: int = 0) -> float:
    """Character 1-3-grams, TF-IDF weighted, and a logistic regression: test accuracy."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    rows = list(read_records(str(train), label_column="label"))
    rows = rows[:max_train_examples] if max_train_examples else rows
    test_rows = list(read_records(str(test), label_column="label"))
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, min_df=2)
    x = vectorizer.fit_transform([r["text"] for r in rows])
    classifier = LogisticRegression(C=10.0, max_iter=2000, random_state=seed)
    classifier.fit(x, [r["label"] for r in rows])
    predicted = classifier.predict(vectorizer.transform([r["text"] for r in test_rows]))
    return sum(p == r["label"] for p, r in zip(predicted, test_rows)) / len(test_rows)


def compare(
    pretrained: str | Path,
    train: Path,
    test: Path,
    out: Path,
    seeds: tuple[int, ...] = (0, 1, 2),
    settings: dict | None = None,
    minilm: str | Path | None = None,
    minilm_seeds: tuple[int, ...] = (0,),
    log=print,
) -> list[Row]:
    """Rows pretrained, scratch, char n-gram (and MiniLM): same split, same fine-tuning budget, same seeds."""
    import time

    settings = {"max_length": 128, "lr": 5e-4, "epochs": 3, "batch_size": 32, **(settings or {})}
    tokenizer = Tokenizer.load(pretrained)
    rows = [Row("pretrained, then fine-tuned"), Row("same model from scratch (no pretraining)")]
    for seed in seeds:
        for row, fresh in zip(rows, (False, True)):
            start = time.perf_counter()
            model = start_model(pretrained, seed, fresh)
            row.start_digests.append(weights_digest(model))
            kind = "scratch" if fresh else "pretrained"
            row.accuracies.append(
                finetune_run(model, tokenizer, train, test, out / f"{kind}-seed{seed}", seed, settings)
            )
            row.seconds += time.perf_counter() - start
            log(f"  {row.name}, seed {seed}: test accuracy {row.accuracies[-1]:.3f}")
    ngram = Row("char 1-3-gram TF-IDF + logistic regression")
    for seed in seeds:
        start = time.perf_counter()
        ngram.accuracies.append(ngram_accuracy(train, test, seed, settings.get("max_train_examples", 0)))
        ngram.seconds += time.perf_counter() - start
    log(f"  {ngram.name}: test accuracy {ngram.mean:.3f}")
    rows.append(ngram)
    if minilm is not None:
        row = Row("all-MiniLM-L6-v2 (pretrained by Microsoft), fine-tuned")
        for seed in minilm_seeds:
            start = time.perf_counter()
            model = load_model(minilm)
            row.start_digests.append(weights_digest(model))
            minilm_settings = {
                **settings,
                "lr": 1e-4,
                "epochs": settings.get("minilm_epochs", settings["epochs"]),
                "pooling": None,  # the model's own (its trained pooler)
            }
            accuracy = finetune_run(
                model, Tokenizer.load(minilm), train, test, out / f"minilm-seed{seed}", seed, minilm_settings
            )
            row.accuracies.append(accuracy)
            row.seconds += time.perf_counter() - start
            log(f"  {row.name}, seed {seed}: test accuracy {accuracy:.3f}")
        rows.append(row)
    return rows


def verdict(rows: list[Row]) -> str:
    """What the table shows about pretraining, in one sentence, from its first two rows (pretrained, scratch):
    said as measured, whichever way it came out."""
    pretrained, scratch = rows[0], rows[1]
    gap, spread = pretrained.mean - scratch.mean, max(pretrained.spread, scratch.spread)
    if gap > spread:
        return (
            f"Pretraining helped: {pretrained.mean:.3f} against {scratch.mean:.3f} from scratch, a gap of {gap:.3f}, "
            f"more than the spread of seeds ({spread:.3f})."
        )
    return (
        f"Here pretraining did NOT help beyond the noise: {pretrained.mean:.3f} against {scratch.mean:.3f} from "
        f"scratch (gap {gap:+.3f}, spread of seeds {spread:.3f}). This budget pretrains too little, or on text too "
        "far from the task, to show what it buys: pretrain longer (the full configs in damoxing/configs/), and "
        "compare with the row of a model pretrained at scale where there is one."
    )


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table: mean, spread, per-seed accuracies, seconds."""
    lines = ["| model | test accuracy (mean) | spread (std) | per seed | seconds |", "|---|---|---|---|---|"]
    for r in rows:
        per_seed = ", ".join(f"{a:.3f}" for a in r.accuracies)
        lines.append(f"| {r.name} | {r.mean:.3f} | {r.spread:.3f} | {per_seed} | {r.seconds:.0f} |")
    return "\n".join(lines)
