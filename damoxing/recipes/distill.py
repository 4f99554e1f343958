"""`damoxing distil CONFIG.yaml`: teacher -> student (every other layer, chosen layers, or a preset) -> Trainer
with the `Distillation` task -> the student saved as the teacher was (a fine-tuned folder, or a language model).

    teacher:  {path: runs/finetune-minilm-bbc/model}    a fine-tuned classifier folder, or a language model
                                                         (HF folder or .gguf: its `lm` head picks the clm task)
    student:  {layers: [0, 2, 4]}   teacher layers kept; [] = every other one (DistilBERT); or {preset: bert-mini}
    data:     train / valid / test files and columns (classifiers); seq_len for language models
    distill:  {temperature: 2.0, alpha: 0.5}   alpha weighs the soft targets, 1 - alpha the hard labels
    train:    the Trainer's TrainConfig (lr, epochs, batch_size, ...)

The run folder holds the Trainer's checkpoints, `model/` (the student), and result.json: parameter counts
of teacher and student and their metrics on the validation (and test) data.
"""

from __future__ import annotations

import json
import math
import types
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..atomic import atomic_open
from ..compress.distill import student_from_preset, student_from_teacher
from ..config import apply_overrides, check, check_positive, check_range, from_dict, load_yaml, save_yaml, to_dict
from ..data.collators import PaddingCollator
from ..data.readers import read_texts
from ..data.splits import train_val_split
from ..errors import ConfigError, DataError
from ..evaluation.evaluate import evaluate_records
from ..io.checkpoint import load_into, save_model
from ..io.finetuned import save_finetuned
from ..tasks import Distillation, get_task
from ..training.batches import Batches
from ..training.config import TrainConfig
from ..training.trainer import Trainer
from .evaluate import load_for_evaluation


@dataclass(frozen=True)
class StudentConfig:
    layers: tuple[int, ...] = ()  # teacher layers the student keeps; () = every other one (0, 2, 4, ...)
    preset: str = ""  # instead: a fresh model of this preset, with the teacher's vocabulary and head

    def __post_init__(self):
        check(not (self.layers and self.preset), "student", "give 'layers' or 'preset', not both.")


@dataclass(frozen=True)
class DistillConfig:
    temperature: float = 2.0
    alpha: float = 0.5  # weight of the soft targets; the hard labels get 1 - alpha

    def __post_init__(self):
        check_positive("distill.temperature", self.temperature)
        check_range("distill.alpha", self.alpha, 0.0, 1.0)


@dataclass(frozen=True)
class DistillDataConfig:
    train: tuple[str, ...] = ()
    valid: tuple[str, ...] = ()  # when empty, valid_fraction of train is held out
    test: tuple[str, ...] = ()
    valid_fraction: float = 0.1
    text_column: str = "text"
    text_pair_column: str = ""
    label_column: str = "label"
    text_mode: str = "paragraph"  # language models, .txt files: paragraph | line | file
    max_length: int = 256  # classifiers: tokens per text
    seq_len: int = 128  # language models: tokens per packed block
    max_train_examples: int = 0

    def __post_init__(self):
        check(len(self.train) > 0, "data.train", "list at least one training file or folder.")
        for key in ("train", "valid", "test"):
            for p in getattr(self, key):
                check(Path(p).exists(), f"data.{key}", f"file not found: {p}")
        check_range("data.valid_fraction", self.valid_fraction, 0.0, 0.5)
        for key in ("max_length", "seq_len"):
            check_positive(f"data.{key}", getattr(self, key))


@dataclass(frozen=True)
class DistillRunConfig:
    teacher: dict = field(default_factory=dict)  # {path: FOLDER or .gguf}
    student: StudentConfig = field(default_factory=StudentConfig)
    data: DistillDataConfig | None = None
    distill: DistillConfig = field(default_factory=DistillConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        check(self.data is not None, "data", "the config needs a 'data' section with 'train' files.")
        check(
            set(self.teacher) == {"path"}, "teacher", "give exactly 'path' (a fine-tuned folder or a language model)."
        )
        check(Path(str(self.teacher["path"])).exists(), "teacher.path", f"not found: {self.teacher['path']}")


TRAIN_DEFAULTS = {"lr": 1e-4, "epochs": 3, "max_steps": 100_000, "batch_size": 16, "plot": False, "tensorboard": False}


def load_distill_config(source, overrides=()) -> DistillRunConfig:
    data = load_yaml(source) if isinstance(source, (str, Path)) else dict(source)
    data = apply_overrides(data, overrides)
    data["train"] = {**TRAIN_DEFAULTS, **dict(data.get("train") or {})}
    return from_dict(DistillRunConfig, data)


def distil(config, out_dir: str | Path | None = None, overrides=(), verbose: bool = True) -> dict:
    """Distil as `config` says (YAML path or dict) into `out_dir` (default runs/<config name>/); returns result.json."""
    cfg = load_distill_config(config, overrides)
    name = Path(config).stem if isinstance(config, (str, Path)) else "distil"
    out = Path(out_dir) if out_dir is not None else Path("runs") / name
    teacher, tokenizer, meta = load_for_evaluation(cfg.teacher["path"])
    base = get_task(meta["task"])
    if cfg.student.preset:
        student = student_from_preset(cfg.student.preset, teacher)
    else:
        student = student_from_teacher(teacher, cfg.student.layers or None)
    task = Distillation(teacher, base, cfg.distill.temperature, cfg.distill.alpha)
    language_model = teacher.config.head == "lm"
    train_batches, valid_batches, _valid, test = (_lm_batches if language_model else _labelled_batches)(
        cfg, base, tokenizer, meta
    )
    tc = cfg.train
    if tc.epochs:
        tc = replace(tc, max_steps=min(tc.max_steps, tc.epochs * math.ceil(len(train_batches) / tc.grad_accum)))
    if language_model:
        save = lambda m, folder: save_model(m, tokenizer, folder)
    else:
        meta = {k: v for k, v in meta.items() if k != "pooling"}
        save = lambda m, folder: save_finetuned(m, tokenizer, folder, meta)
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(to_dict(cfg), out / "config.yaml")
    _log(
        verbose,
        f"distil: teacher {teacher.num_parameters():,} parameters ({teacher.config.layers} layers), "
        f"student {student.num_parameters():,} ({student.config.layers} layers)",
    )
    fit = Trainer(
        student,
        task,
        train_batches,
        tc,
        out,
        eval_data=valid_batches,
        save=save,
        load=load_into,
        run_config=to_dict(cfg),
    ).fit()
    student.eval()
    save(student, out / "model")
    result = {
        "teacher": str(cfg.teacher["path"]),
        "teacher_parameters": teacher.num_parameters(),
        "student_parameters": student.num_parameters(),
        "student_layers": student.config.layers,
        "steps": fit["step"],
        "valid": fit["eval"],
        "model_dir": str(out / "model"),
    }
    if not language_model and test:
        for who, model in (("teacher", teacher), ("student", student)):
            metrics = evaluate_records(model, tokenizer, base, test, meta["labels"], cfg.data.max_length)
            result[f"test_{who}"] = {k: metrics[k] for k in ("accuracy", "f1_macro", "loss") if k in metrics}
    with atomic_open(out / "result.json") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    _log(verbose, f"student saved to {out / 'model'}")
    return result


def _labelled_batches(cfg: DistillRunConfig, base, tokenizer, meta: dict):
    """Classifier teachers: labelled records read with the teacher's columns and label names."""
    data = cfg.data
    columns = {
        **{k: meta.get(k) for k in ("text_column", "text_pair_column", "label_column")},
        **{k: getattr(data, k) for k in ("text_column", "text_pair_column", "label_column")},
    }
    labels = base.known_labels(meta["labels"])
    read = lambda paths: list(base.read(paths, columns, labels=labels))
    train = read(data.train)
    if data.max_train_examples:
        train = train[: data.max_train_examples]
    if data.valid:
        valid = read(data.valid)
    else:
        train, valid = train_val_split(train, data.valid_fraction, seed=cfg.train.seed)
    test = read(data.test) if data.test else None
    if not train or not valid:
        raise DataError(f"data: {len(train)} training and {len(valid)} validation records; need at least one of each")
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    collator = PaddingCollator(pad_id)
    collate = lambda examples, generators: collator(examples)
    batches = [
        Batches(
            base.examples(tokenizer, part, data.max_length),
            collate,
            cfg.train.batch_size,
            seed=cfg.train.seed,
            shuffle=shuffle,
            drop_last=False,
        )
        for part, shuffle in ((train, True), (valid, False))
    ]
    return batches[0], batches[1], valid, test


def _lm_batches(cfg: DistillRunConfig, base, tokenizer, meta: dict):
    """Language-model teachers: documents packed into blocks of data.seq_len tokens, as in pretraining."""
    data = cfg.data
    if data.test:
        raise ConfigError(
            "data.test: a language-model student is measured by its validation loss; "
            "evaluate perplexity afterwards with damoxing evaluate"
        )
    docs = [
        t for t in read_texts(list(data.train), text_column=data.text_column, text_mode=data.text_mode) if t.strip()
    ]
    if data.valid:
        valid_docs = [
            t for t in read_texts(list(data.valid), text_column=data.text_column, text_mode=data.text_mode) if t.strip()
        ]
    else:
        docs, valid_docs = train_val_split(docs, data.valid_fraction, seed=cfg.train.seed)
    if not docs or not valid_docs:
        raise DataError(f"data: {len(docs)} training and {len(valid_docs)} validation documents; need both")
    run = types.SimpleNamespace(data=data)  # what the clm task's prepare reads: data.seq_len
    train, collate = base.prepare(tokenizer, docs, run)
    valid, _ = base.prepare(tokenizer, valid_docs, run)
    bs = cfg.train.batch_size
    return (
        Batches(train, collate, bs, seed=cfg.train.seed, drop_last=False),
        Batches(valid, collate, bs, shuffle=False, drop_last=False),
        valid,
        None,
    )


def _log(verbose: bool, message: str) -> None:
    if verbose:
        print(message, flush=True)
