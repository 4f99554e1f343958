"""Run configs: the YAML sections `model`, `tokenizer`, `data`, `train` as frozen dataclasses.

    run = load_run_config("damoxing/configs/gpt-mini-clm.yaml", overrides=["train.lr=3e-4"])

Every field is a plain type; every value is checked in __post_init__ with a message naming the key.
The `model` section stays a dict here: `damoxing.models.model_config` resolves it (presets, families).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..config import apply_overrides, check, check_choice, check_positive, check_range, from_dict, load_yaml
from ..data.word_boundaries import WORD_SEGMENTERS

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("linear", "cosine", "constant")
TOKENIZER_KINDS = ("wordpiece", "bpe", "unigram", "sentencepiece_bpe")


@dataclass(frozen=True)
class TrainConfig:
    task: str = "clm"  # a name in damoxing.tasks.TASKS: mlm_nsp | masked_lm | clm | classification | ...
    batch_size: int = 16  # micro-batch per device
    grad_accum: int = 1  # micro-batches per optimiser step
    max_steps: int = 1000  # optimiser steps; epochs repeat the data as needed
    epochs: int = 0  # > 0: stop after this many passes over the data (whichever comes first)
    max_minutes: float = 0.0  # > 0: also stop after this much wall-clock time (the schedule follows max_steps)
    optimizer: str = "adamw"
    lr: float | None = 3e-4  # None: the recipe chooses (fine-tuning: per method)
    min_lr_ratio: float = 0.0  # the decay ends at lr * min_lr_ratio
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    momentum: float = 0.9  # sgd only
    schedule: str = "linear"  # decay after warm-up: linear | cosine | constant
    warmup_steps: int = 0
    warmup_ratio: float = 0.0  # used when warmup_steps is 0
    clip_grad: float = 1.0  # max global gradient norm; 0 = off
    nonfinite: str = "stop"  # a non-finite loss or gradient norm: stop the run, or skip the step
    max_skipped_steps: int = 20  # stop after this many skipped steps in a row (skip mode, and fp16 overflows)
    precision: str = "auto"  # auto: bf16 on GPUs and CPUs that run it natively (AVX-512 BF16, AMX), else fp32
    compile: bool = False  # torch.compile the model
    seed: int = 0
    threads: int | None = None  # CPU threads (torch.set_num_threads); None: the physical cores this process may use
    log_every: int = 10  # steps between log lines
    progress_seconds: float = 30.0  # stderr not a terminal: a progress line (step/total, elapsed, ETA) this often
    eval_every: int = 0  # steps between evaluations; 0 = only at the end (fine-tuning: once per epoch)
    eval_precision: str = "train"  # train: evaluate under the training precision | fp32: always in full precision
    eval_batches: int = 0  # limit evaluation to this many batches; 0 = all
    save_every: int = 0  # steps between checkpoints; 0 = only at the end
    # a checkpoint for an evaluation that improved is written at once only this long after the last write;
    # until then it is held in memory and written at the end, on Ctrl-C, when the time is up or with the next one
    save_minutes: float = 10.0
    reuse_memory: bool = True  # keep freed memory for reuse (glibc): no fresh pages faulted in every step
    keep_last: int = 2  # checkpoints kept besides the best
    metric: str = "loss"  # evaluation metric for the best checkpoint and early stopping
    metric_mode: str = "min"  # min | max
    patience: int = 0  # stop after this many evaluations without improvement; 0 = never
    resume: str = "never"  # never | auto (continue from the newest checkpoint in the run folder)
    distributed: str = "ddp"  # ddp | fsdp (used only under torchrun)
    plot: bool = True  # loss-curve PNG at the end of the run
    tensorboard: bool = True

    def __post_init__(self):
        for key in ("batch_size", "grad_accum", "max_steps", "log_every", "max_skipped_steps", "progress_seconds"):
            check_positive(f"train.{key}", getattr(self, key))
        if self.lr is not None:
            check_positive("train.lr", self.lr)
        if self.threads is not None:
            check(
                isinstance(self.threads, int) and self.threads >= 1,
                "train.threads",
                f"a whole number of CPU threads >= 1, got {self.threads!r}; leave it out to use the "
                f"{available_cores()} physical cores available here.",
            )
        for key in (
            "epochs",
            "max_minutes",
            "eval_every",
            "eval_batches",
            "save_every",
            "save_minutes",
            "warmup_steps",
            "patience",
            "clip_grad",
            "weight_decay",
            "eps",
            "keep_last",
        ):
            check_positive(f"train.{key}", getattr(self, key), allow_zero=True)
        check_choice("train.optimizer", self.optimizer, OPTIMIZERS)
        check_choice("train.schedule", self.schedule, SCHEDULES)
        check_choice("train.precision", self.precision, PRECISIONS)
        check_choice("train.eval_precision", self.eval_precision, ("train", "fp32"))
        check_choice("train.metric_mode", self.metric_mode, ("min", "max"))
        check_choice("train.resume", self.resume, ("never", "auto"))
        check_choice("train.nonfinite", self.nonfinite, ("stop", "skip"))
        check_choice("train.distributed", self.distributed, ("ddp", "fsdp"))
        check_range("train.warmup_ratio", self.warmup_ratio, 0.0, 1.0)
        check_range("train.min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        check_range("train.momentum", self.momentum, 0.0, 1.0)
        check(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            "train.betas",
            f"two numbers in [0, 1), got {list(self.betas)}.",
        )

    @property
    def warmup(self) -> int:
        return self.warmup_steps or round(self.warmup_ratio * self.max_steps)

    @property
    def num_threads(self) -> int:
        """train.threads, or the physical cores available to this process."""
        return self.threads if self.threads is not None else available_cores()


def available_cores() -> int:
    """Physical cores this process may run on: its CPU affinity, counting SMT siblings (hyper-threads) once
    when Linux says which they are (/sys/devices/system/cpu/cpuN/topology/thread_siblings_list)."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    cores = set()
    for cpu in cpus:
        siblings = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        try:
            cores.add(siblings.read_text().strip())  # e.g. "0,8" or "0-1": the same text for both siblings
        except OSError:
            return max(1, len(cpus))  # no topology to read: the affinity count
    return max(1, len(cores))


@dataclass(frozen=True)
class TokenizerConfig:
    path: str = ""  # load a tokenizer folder (or GGUF file)
    train: bool = False  # or train one on data.train first
    kind: str = "wordpiece"  # wordpiece | bpe (byte-level, GPT-2) | unigram | sentencepiece_bpe (T5, Marian style)
    vocab_size: int = 8000
    lowercase: bool = True  # wordpiece only
    extra_ids: int = 0  # unigram / sentencepiece_bpe: <extra_id_N> sentinels for span corruption (T5: 100)

    def __post_init__(self):
        check(
            bool(self.path) != self.train,
            "tokenizer",
            "give either 'path' (load a tokenizer) or 'train: true' (train one on data.train), not both.",
        )
        check_choice("tokenizer.kind", self.kind, TOKENIZER_KINDS)
        check_positive("tokenizer.vocab_size", self.vocab_size)
        check_positive("tokenizer.extra_ids", self.extra_ids, allow_zero=True)
        check(
            self.extra_ids == 0 or self.kind in ("unigram", "sentencepiece_bpe"),
            "tokenizer.extra_ids",
            "sentinels come with the sentencepiece-style kinds (unigram, sentencepiece_bpe).",
        )


@dataclass(frozen=True)
class DataConfig:
    train: tuple[str, ...] = ()  # files or folders (.txt/.jsonl/.csv/.parquet, optionally .gz)
    eval: tuple[str, ...] = ()  # held-out files; when empty, eval_fraction of train is held out
    eval_fraction: float = 0.05
    text_column: str = "text"
    text_mode: str = "paragraph"  # .txt files: paragraph | line | file
    seq_len: int = 128
    mask_prob: float = 0.15  # mlm: fraction of tokens to predict
    whole_word: bool = True  # mlm: mask all pieces of a word together
    word_segmenter: str = ""  # mlm whole-word masking: words from jieba (Chinese, one char per token), or "": '##'
    nsp_prob: float = 0.5  # mlm_nsp: fraction of pairs whose second segment is random
    shuffle: bool = True
    skip_bad: bool = False  # skip and count bad records (malformed rows, bad UTF-8) instead of stopping at the first

    def __post_init__(self):
        check(len(self.train) > 0, "data.train", "list at least one training file or folder.")
        for key in ("train", "eval"):
            for p in getattr(self, key):
                check(Path(p).exists(), f"data.{key}", f"file not found: {p}")
        check_range("data.eval_fraction", self.eval_fraction, 0.0, 0.5)
        check_choice("data.text_mode", self.text_mode, ("paragraph", "line", "file"))
        check_positive("data.seq_len", self.seq_len)
        check(
            0.0 < self.mask_prob < 1.0,
            "data.mask_prob",
            f"must be between 0 and 1 (exclusive), got {self.mask_prob!r}.",
        )
        check_range("data.nsp_prob", self.nsp_prob, 0.0, 1.0)
        check_choice("data.word_segmenter", self.word_segmenter, WORD_SEGMENTERS)
        check(
            self.whole_word or not self.word_segmenter,
            "data.word_segmenter",
            "the segmenter's words are for whole-word masking: set data.whole_word: true, or remove the key.",
        )


@dataclass(frozen=True)
class RunConfig:
    model: dict = field(default_factory=dict)  # resolved by damoxing.models.model_config
    tokenizer: TokenizerConfig = field(default_factory=lambda: TokenizerConfig(train=True))
    data: DataConfig | None = None
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        check(self.data is not None, "data", "the config needs a 'data' section with 'train' files.")


def load_run_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    """YAML file + `section.key=value` overrides -> RunConfig; relative data paths are kept as written."""
    return from_dict(RunConfig, apply_overrides(load_yaml(path), overrides))
