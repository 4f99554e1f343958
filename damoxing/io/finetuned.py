"""A fine-tuned model folder: the Hugging Face layout plus `finetune.json`, and how to read it back.

    model/config.json          id2label / label2id (HF style), written by damoxing.io.checkpoint.save_model
    model/model.safetensors    weights (LoRA runs: the merged weights)
    model/tokenizer.json ...   the tokenizer (image and tabular models: preprocessor_config.json)
    model/finetune.json        task, method, max_length, column names, pooling: what evaluate and predict
                               need to feed the model the same way training did

`load_finetuned(folder)` also accepts a plain HF classification folder (no finetune.json): the task
is then read from the head (token head -> token; one output and no label names -> regression).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from torch import nn

from ..atomic import atomic_open
from ..data.processors import load_processor
from ..errors import CheckpointError
from ..models import family_of
from ..tasks import get_task, task_for_head
from .checkpoint import load_model, save_model

META_FILE = "finetune.json"
SAVABLE_POOLING = {"encoder": "pooler", "decoder": "last", "vit": "cls", "seq2seq": "mean"}  # what HF heads read


def _family(model: nn.Module) -> str:
    return family_of(model.config)


def save_finetuned(model: nn.Module, tokenizer, path: str | os.PathLike, meta: dict) -> Path:
    """save_model + finetune.json. A pooling the HF head cannot express is recorded in finetune.json."""
    path = Path(path)
    config = model.config
    meta = {**meta, "pooling": getattr(config, "pooling", None)}  # an MLP has none
    family = _family(model)
    savable = SAVABLE_POOLING.get(family)
    if (
        savable
        and config.head == "sequence"
        and config.pooling != savable
        and (family == "decoder" or (family == "vit" and config.class_token) or config.pooler)
    ):
        # config.json says the HF pooling; finetune.json keeps the one trained with, which load_finetuned restores
        model.config = dataclasses.replace(config, pooling=savable)
    try:
        save_model(model, tokenizer, path)
    finally:
        model.config = config
    with atomic_open(path / META_FILE) as f:
        json.dump(meta, f, indent=2, ensure_ascii=False)
        f.write("\n")
    return path


def read_meta(path: str | os.PathLike) -> dict:
    file = Path(path) / META_FILE
    if not file.is_file():
        return {}
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{file}: not valid JSON ({e}); re-save the model or delete the file") from None


def load_finetuned(path: str | os.PathLike):
    """(model in eval mode, tokenizer or image processor, meta) of a fine-tuned folder; meta always has task
    and label names."""
    path = Path(path)
    model = load_model(path)
    tokenizer = load_processor(path)
    return model, tokenizer, finetuned_meta(model, tokenizer, path)


def finetuned_meta(model: nn.Module, tokenizer, path: str | os.PathLike) -> dict:
    """finetune.json with defaults filled in (restores its pooling on `model`)."""
    meta = read_meta(path)
    config = model.config
    if "task" in meta and get_task(meta["task"]).head != config.head:
        raise CheckpointError(
            f"{path}: finetune.json says task {meta['task']!r}, but the model has a "
            f"{config.head!r} head; the folder's files do not belong together"
        )
    if "task" not in meta and config.head not in ("sequence", "token"):
        raise CheckpointError(
            f"{path}: the model has a {config.head!r} head, not a classification or regression "
            "head; fine-tune it first (damoxing finetune)"
        )
    if meta.get("pooling") and meta["pooling"] != config.pooling:
        model.config = dataclasses.replace(config, pooling=meta["pooling"])
    labels = getattr(model, "labels", None)
    meta["task"] = get_task(meta["task"]).name if "task" in meta else task_for_head(config, labels).name
    meta.setdefault("labels", labels or [f"LABEL_{i}" for i in range(config.num_labels)])
    meta.setdefault("max_length", getattr(tokenizer, "model_max_length", None) or 512)
    for key, default in (
        ("text_column", "text"),
        ("text_pair_column", ""),
        ("label_column", "label"),
        ("tokens_column", "tokens"),
        ("tags_column", "tags"),
        ("source_column", "source"),
        ("target_column", "target"),
    ):
        meta.setdefault(key, default)
    return meta
