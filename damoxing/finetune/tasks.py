"""Fine-tuning tasks for the Trainer: `sequence` (single sentence or pair), `token` and `regression`.

Each is registered in `damoxing.training.tasks.TASKS` and follows its contract: losses are sums over
targets (the Trainer divides by the target count of the whole optimiser step), metrics are
(numerator, denominator) pairs. A batch is the output of `encode.encode`: input_ids, attention_mask,
token_type_ids for encoders, and `labels` (class ids (B,), per-token ids (B, T) with -100 for
ignored positions, or float scores (B,)). The same code runs encoders and decoders.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..training.tasks import TASKS, TaskOutput, register_task
from .encode import IGNORE_INDEX, model_inputs

FINETUNE_TASKS = ("sequence", "token", "regression")


def logits_of(model, batch: dict) -> torch.Tensor:
    """The model's head output for a batch: (B, labels), (B, T, labels) or (B, 1)."""
    hidden = model.forward_features(**model_inputs(model, batch))
    return model.forward_head(hidden, batch.get("attention_mask"))


def _count(n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(n, device=like.device)


def sequence_loss(model, batch: dict) -> TaskOutput:
    """Cross-entropy over one label per sequence (or sentence pair)."""
    logits = logits_of(model, batch).float()  # (B, labels)
    y = batch["labels"]
    loss = F.cross_entropy(logits, y, reduction="sum")
    correct = (logits.argmax(-1) == y).sum()
    return TaskOutput({"loss": loss}, {"accuracy": (correct, _count(len(y), y))})


def token_loss(model, batch: dict) -> TaskOutput:
    """Cross-entropy over every labelled token; positions labelled -100 are ignored."""
    logits = logits_of(model, batch).float()  # (B, T, labels)
    y = batch["labels"][:, : logits.shape[1]]
    loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
    where = y != IGNORE_INDEX
    correct = ((logits.argmax(-1) == y) & where).sum()
    return TaskOutput({"loss": loss}, {"accuracy": (correct, where.sum())})


def regression_loss(model, batch: dict) -> TaskOutput:
    """Mean squared error of a single score per sequence (head with one output)."""
    pred = logits_of(model, batch).float().squeeze(-1)  # (B,)
    y = batch["labels"].float()
    loss = F.mse_loss(pred, y, reduction="sum")
    return TaskOutput({"loss": loss}, {"mae": ((pred - y).abs().sum().detach(), _count(len(y), y))})


def _regression_targets(batch: dict) -> dict[str, torch.Tensor]:
    return {"loss": torch.tensor(len(batch["labels"]))}


for _name, _fn, _targets in (("sequence", sequence_loss, None), ("token", token_loss, None),
                             ("regression", regression_loss, _regression_targets)):
    if _name not in TASKS:  # the trainer may already provide one under this name
        register_task(_name, **({"targets": _targets} if _targets else {}))(_fn)
