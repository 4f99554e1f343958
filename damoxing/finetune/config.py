"""The fine-tuning config: YAML sections `model`, `tokenizer`, `data`, `finetune`, `train`.

    model:     {path: FOLDER}  a pretrained Hugging Face folder (its tokenizer or image processor comes with it),
               or {preset: bert-tiny, ...fields}  a fresh model (then text tasks need `tokenizer:` {path: FOLDER},
               or {train: true, kind: unigram, vocab_size: 8000} to train one on the training data)
    data:      train / valid / test files, columns (names, or positions from 0), header, max_length
    transforms: image tasks: resize, normalisation, augmentation (data/processors.py ImageProcessor);
               tabular tasks: feature columns, standardisation
    finetune:  method (full | head | features | lora), task (classification | pair | token_classification |
               regression | translation; the earlier names sequence and token still read), LoRA and
               classifier settings, layer-wise learning-rate decay; translation: label smoothing, decoding
    train:     the Trainer's TrainConfig (lr, batch_size, epochs, ...); train.task follows finetune.task

Defaults that depend on the method (`method_defaults` resolves them and says which were chosen):
`train.lr` (full 5e-5, head 2e-3, lora 1e-3; features trains no network) and `finetune.pooling` (mean for
the frozen bodies of head and features, else the model's own). Fine-tuning evaluates once per epoch by
default (`train.eval_every: 0`), in fp32 (`train.eval_precision`), and keeps the best weights.

Unknown keys are errors with a suggestion; every value is checked with a message naming its key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ..config import apply_overrides, check, check_choice, check_positive, check_range, from_dict, load_yaml
from ..data.formats import HEADER_CHOICES
from ..errors import ConfigError
from ..tasks import ALIASES, finetune_tasks, get_task
from ..training.config import TokenizerConfig, TrainConfig
from .methods import METHODS

CLASSIFIERS = ("logreg",)
METHOD_LR = {"full": 5e-5, "head": 2e-3, "lora": 1e-3}  # the learning rates that usually work per method
FROZEN_BODY = ("head", "features")  # methods that keep the body as it is: mean pooling suits them
LR_FACTOR = 10  # warn when train.lr is more than this factor away from the method's usual value


@dataclass(frozen=True)
class FinetuneDataConfig:
    train: tuple[str, ...] = ()  # files or folders (.csv/.tsv/.jsonl/.parquet, optionally .gz; class folders)
    valid: tuple[str, ...] = ()  # when empty, valid_fraction of train is held out
    test: tuple[str, ...] = ()  # evaluated once at the end, with a report
    valid_fraction: float = 0.1  # 0: no validation split (then the last model is kept)
    header: str = "auto"  # CSV/TSV: auto | true | false: whether the first row names the columns
    text_column: int | str = "text"  # a column name, or its position counted from 0 (a file without a header)
    text_pair_column: int | str = ""  # set for sentence-pair tasks (e.g. "text_b")
    label_column: int | str = "label"  # CSVs of pixels without a header: "first" or "last"
    label_names: tuple[str, ...] = ()  # names of integer labels 0..n-1 (IDX files, pixel CSVs)
    tokens_column: str = "tokens"  # token task: JSONL field with the list of words
    tags_column: str = "tags"  # token task: JSONL field with one tag per word
    source_column: str = "source"  # translation: the text to translate
    target_column: str = "target"  # translation: its translation
    max_length: int = 256
    max_train_examples: int = 0  # > 0: use only the first N training examples (quick runs)
    # how training batches are laid out (auto: whichever computes > 20% fewer positions than plain random batches
    # with dynamic padding; training/batches.py choose_layout); the batch's examples are the same under packing
    packing: bool | str = "auto"  # classification on encoders: a batch's examples side by side in rows of max_length
    group_by_length: bool | str = "auto"  # where packing is off: batches of similar lengths (HF's group_by_length)
    skip_bad: bool = False  # skip and count bad records instead of stopping at the first

    def __post_init__(self):
        check(len(self.train) > 0, "data.train", "list at least one training file or folder.")
        for key in ("train", "valid", "test"):
            for p in getattr(self, key):
                check(Path(p).exists(), f"data.{key}", f"file not found: {p}")
        check_range("data.valid_fraction", self.valid_fraction, 0.0, 0.5)
        if isinstance(self.header, str) and self.header.lower() in ("true", "false", "auto"):
            object.__setattr__(self, "header", self.header.lower())  # YAML's true/false arrive as "True"/"False"
        check_choice("data.header", self.header, HEADER_CHOICES)
        for key in ("text_column", "text_pair_column", "label_column"):
            value = getattr(self, key)
            check(not isinstance(value, int) or value >= 0, f"data.{key}", f"a position counts from 0, got {value}.")
        check_positive("data.max_length", self.max_length)
        check_positive("data.max_train_examples", self.max_train_examples, allow_zero=True)
        check_choice("data.packing", self.packing, (True, False, "auto"))
        check_choice("data.group_by_length", self.group_by_length, (True, False, "auto"))


@dataclass(frozen=True)
class FinetuneConfig:
    method: str = "full"  # full | head | features | lora
    task: str = "classification"  # classification (one text, or a pair) | pair | token_classification | regression
    # what sequence heads see: pooler | cls | mean | last; "" keeps the model's; None (unset): mean for head and
    # features (frozen bodies), the model's own for full and lora
    pooling: str | None = None
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q", "v")  # module-name suffixes or globs: attn.q, mlp.fc1, blocks.*.attn.o
    lora_merge: bool = True  # also save the merged model (for serving) besides the adapters
    classifier: str = "logreg"  # features method: logistic regression (ridge for regression)
    classifier_c: float = 1.0  # inverse regularisation strength of the classifier
    cache_dir: str = ""  # features method; "" = $DAMOXING_CACHE/features or ~/.cache/damoxing/features
    layerwise_lr_decay: float = 1.0  # full method: lr * decay ** (distance from the top layer); 1 = off
    eval_batch_size: int = 64
    label_smoothing: float = 0.0  # translation: cross-entropy against (1 - e) one-hot + e uniform
    num_beams: int = 1  # translation: decoding for evaluation and prediction (1: greedy)
    max_new_tokens: int = 128  # translation: the longest output
    length_penalty: float = 1.0  # translation: beam score = sum of log-probabilities / length ** length_penalty

    def __post_init__(self):
        check_choice("finetune.method", self.method, METHODS)
        check_choice("finetune.task", ALIASES.get(self.task, self.task), finetune_tasks())
        object.__setattr__(self, "task", get_task(self.task).name)  # earlier names -> the registered one
        if self.pooling:
            check_choice("finetune.pooling", self.pooling, ("pooler", "cls", "mean", "last"))
        check_positive("finetune.lora_rank", self.lora_rank)
        check_positive("finetune.lora_alpha", self.lora_alpha)
        check_range("finetune.lora_dropout", self.lora_dropout, 0.0, 1.0)
        check(len(self.lora_targets) > 0, "finetune.lora_targets", "name at least one layer, e.g. [q, v].")
        check_choice("finetune.classifier", self.classifier, CLASSIFIERS)
        check_positive("finetune.classifier_c", self.classifier_c)
        check_range("finetune.layerwise_lr_decay", self.layerwise_lr_decay, 0.0, 1.0)
        check(self.layerwise_lr_decay > 0, "finetune.layerwise_lr_decay", "must be > 0 (1 = off).")
        check_positive("finetune.eval_batch_size", self.eval_batch_size)
        check_range("finetune.label_smoothing", self.label_smoothing, 0.0, 1.0)
        check_positive("finetune.num_beams", self.num_beams)
        check_positive("finetune.max_new_tokens", self.max_new_tokens)
        check(
            self.method != "features" or get_task(self.task).linear_probe is not None,
            "finetune.method",
            f"'features' fits a classifier on pooled sequence features, which the {self.task} task has not; "
            "use head, lora or full.",
        )


@dataclass(frozen=True)
class FinetuneRunConfig:
    model: dict = field(default_factory=dict)  # {path: FOLDER} or a preset section
    tokenizer: dict = field(default_factory=dict)  # {path: FOLDER} or {train: true, ...}; only for preset models
    transforms: dict = field(default_factory=dict)  # read by the task (image and tabular tasks)
    data: FinetuneDataConfig | None = None
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(task="classification", lr=5e-5, epochs=3, max_steps=100_000, batch_size=16)
    )

    def __post_init__(self):
        check(self.data is not None, "data", "the config needs a 'data' section with 'train' files.")
        if "path" in self.model:  # a preset section is checked when the model is built (model_config)
            extra = sorted(set(self.model) - {"path"})
            check(not extra, "model", f"with 'path', the other keys ({', '.join(extra)}) have no effect; remove them.")
            check(Path(str(self.model["path"])).exists(), "model.path", f"not found: {self.model['path']}")
        if self.tokenizer:
            check(
                not self.tokenizer.get("train") or "path" not in self.model,
                "tokenizer",
                "a pretrained model (model.path) brings its tokenizer; remove the tokenizer section.",
            )
            from_dict(TokenizerConfig, self.tokenizer, prefix="tokenizer")  # checks every key


TRAIN_DEFAULTS = {
    "lr": None,  # per method: METHOD_LR
    "eval_precision": "fp32",  # the in-training evaluation agrees with the final one (and with predict)
    "epochs": 3,
    "max_steps": 100_000,
    "batch_size": 16,
    "plot": False,
    "tensorboard": False,
    "metric": "accuracy",
    "metric_mode": "max",
}


def load_finetune_config(source: str | Path | dict | FinetuneRunConfig, overrides=()) -> FinetuneRunConfig:
    """A YAML path, a plain dict or a FinetuneRunConfig (+ `section.key=value` overrides) -> FinetuneRunConfig."""
    if isinstance(source, FinetuneRunConfig):
        if not overrides:
            return source
        from ..config import to_dict

        source = to_dict(source)
    data = load_yaml(source) if isinstance(source, (str, Path)) else dict(source)
    data = apply_overrides(data, overrides)
    finetune = dict(data.get("finetune") or {})
    task = finetune.get("task", "classification")
    train = {**TRAIN_DEFAULTS, **dict(data.get("train") or {})}
    if "task" in train and train["task"] != task:
        raise ConfigError(f"train.task: fine-tuning sets it from finetune.task ({task!r}); remove train.task.")
    train["task"] = task
    if task in finetune_tasks() or task in ALIASES:
        train["task"] = get_task(task).name
        if "metric" not in (data.get("train") or {}):  # the task's own selection metric
            train["metric"], train["metric_mode"] = get_task(task).metric
    data["train"] = train
    return from_dict(FinetuneRunConfig, data)


def method_defaults(cfg: FinetuneRunConfig, pretrained: bool = True) -> tuple[FinetuneRunConfig, list[str]]:
    """`cfg` with the method's learning rate where the user left train.lr unset, and the lines that say what
    was chosen; a warning line when a pretrained model's lr is more than LR_FACTOR away from the method's
    usual one (a model trained from scratch, `pretrained=False`, is not warned about). finetune.pooling is
    resolved with the model (`default_pooling`)."""
    method, lr, lines = cfg.finetune.method, cfg.train.lr, []
    usual = METHOD_LR.get(method)
    if usual is None:  # features: a classifier on frozen features, no gradient steps
        if lr is not None:
            lines.append(f"lr {number(lr)} is not used (features fits a logistic regression)")
    elif lr is None:
        lr = usual
        lines.append(f"lr {number(lr)} (default for {method})")
    else:
        lines.append(f"lr {number(lr)} (train.lr)")
        if pretrained and not usual / LR_FACTOR <= lr <= usual * LR_FACTOR:
            factor, side = (lr / usual, "above") if lr > usual else (usual / lr, "below")
            lines.append(
                f"warning: train.lr {number(lr)} is {factor:.0f}x {side} the usual {number(usual)} for {method}; "
                "leave train.lr out to use the usual one"
            )
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=lr)), lines


def default_pooling(method: str, pooling: str | None, model_config) -> tuple[str, str | None]:
    """(the pooling to set, "" = keep the model's; a line saying so when it is the method's default)."""
    if pooling is not None:
        return pooling, f"pooling {pooling}" if pooling else None
    if method in FROZEN_BODY and hasattr(model_config, "pooling"):
        return "mean", f"pooling mean (default for {method}: the body is frozen)"
    return "", None


def number(x: float) -> str:
    """2e-3, 5e-5, 1.5e-4: a learning rate as people write it (0.3 stays 0.3)."""
    if x >= 0.01:
        return f"{x:g}"
    mantissa, exponent = f"{x:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
