"""Tasks: how a batch becomes a loss. The Trainer knows nothing else about the objective.

The contract (two small functions, registered together under a name in TASKS):

    targets(batch) -> {"mlm": n_masked, "nsp": n_pairs}      counts, known before the forward pass
    loss(model, batch) -> TaskOutput(losses={"mlm": summed_ce, "nsp": summed_ce},
                                     metrics={"mlm_acc": (n_correct, n_masked), ...})

`losses` are *sums* over targets, never means. The Trainer adds up `targets` over every micro-batch of
an optimiser step (and over all ranks) first, then back-propagates sum(losses[k] / total[k]), so
4 micro-batches of 4 give the same update as one batch of 16. The reported loss is the sum of the
per-term means; `metrics` are (numerator, denominator) pairs summed over a whole evaluation.

Add a task:

    @register_task("sequence")        # targets default to {"loss": number of labels != -100}
    def sequence(model, batch):
        logits = model(batch["input_ids"], batch["attention_mask"])
        ce = F.cross_entropy(logits.float(), batch["labels"], reduction="sum")
        return TaskOutput({"loss": ce}, {"accuracy": ((logits.argmax(-1) == batch["labels"]).sum(), len(logits))})
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from ..config import Registry

IGNORE = -100


@dataclass
class TaskOutput:
    losses: dict[str, torch.Tensor]  # term -> loss summed over its targets in this micro-batch
    metrics: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # name -> (sum, count)


@dataclass(frozen=True)
class Task:
    loss: Callable[..., TaskOutput]  # (model, batch) -> TaskOutput
    targets: Callable[[dict], dict[str, torch.Tensor]]  # batch -> {term: number of targets}
    perplexity: str | None = None  # term whose mean loss is exponentiated into a perplexity


def label_targets(batch: dict) -> dict[str, torch.Tensor]:
    return {"loss": (batch["labels"] != IGNORE).sum()}


TASKS = Registry("task")


def _wide(x: torch.Tensor) -> torch.Tensor:
    """Logits for the loss in float32, or float64 when the model runs in float64 (exact checks in the tests)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def register_task(name: str, targets=label_targets, perplexity: str | None = None):
    def add(fn):
        TASKS.register(name, Task(fn, targets, perplexity))
        return fn

    return add


# ---------------------------------------------------------------- chunked linear + cross-entropy
class _LinearCE(torch.autograd.Function):
    """sum(CE(h @ W.T + b, y)) over rows, `chunk` rows at a time, with gradients computed in the forward.

    Only (chunk, V) logits ever exist; nothing of size (N, V) is stored for the backward.
    """

    @staticmethod
    def forward(ctx, h, weight, bias, y, chunk):
        w, acc = weight.to(h.dtype), torch.promote_types(h.dtype, torch.float32)  # acc: float32, or float64
        loss = h.new_zeros((), dtype=acc)
        gh, gw = torch.empty_like(h), torch.zeros_like(weight, dtype=acc)
        gb = torch.zeros_like(bias, dtype=acc) if bias is not None else None
        buffer = h.new_empty(min(chunk, h.shape[0]), w.shape[0])  # reused: no fresh pages for every chunk
        for i in range(0, h.shape[0], chunk):
            hi, yi = h[i:i + chunk], y[i:i + chunk]
            logits = torch.mm(hi, w.t(), out=buffer[:len(hi)])  # (n, V)
            if bias is not None:
                logits += bias.to(h.dtype)
            logits = logits.to(acc)
            target = logits.gather(1, yi[:, None])
            top = logits.amax(-1, keepdim=True)
            p = logits.sub_(top).exp_()  # one exp pass serves the loss and the gradient
            total = p.sum(-1, keepdim=True)
            loss += (top + total.log() - target).sum()
            grad = p.div_(total)  # softmax
            grad[torch.arange(len(yi), device=y.device), yi] -= 1
            grad = grad.to(h.dtype)
            gh[i:i + chunk] = grad @ w
            if grad.dtype == gw.dtype:
                gw.addmm_(grad.t(), hi)
            else:
                gw += (grad.t() @ hi).to(acc)
            if gb is not None:
                gb += grad.to(acc).sum(0)
        ctx.save_for_backward(gh, gw, gb)
        ctx.dtypes = weight.dtype, None if bias is None else bias.dtype
        return loss

    @staticmethod
    def backward(ctx, g):
        gh, gw, gb = ctx.saved_tensors
        wd, bd = ctx.dtypes
        return gh * g.to(gh.dtype), (gw * g).to(wd), None if gb is None else (gb * g).to(bd), None, None


def linear_cross_entropy(h: torch.Tensor, proj: torch.nn.Linear, y: torch.Tensor, chunk: int = 512):
    """Summed cross-entropy of `proj(h)` (N, V) against `y` (N,), never holding all N x V logits."""
    if torch.is_grad_enabled() and (h.requires_grad or proj.weight.requires_grad):
        if torch.is_autocast_enabled(h.device.type):
            h = h.to(torch.get_autocast_dtype(h.device.type))
        return _LinearCE.apply(h, proj.weight, proj.bias, y, chunk)
    total = h.new_zeros((), dtype=torch.promote_types(h.dtype, torch.float32))
    for i in range(0, h.shape[0], chunk):
        total += F.cross_entropy(_wide(proj(h[i:i + chunk])), y[i:i + chunk], reduction="sum")
    return total


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return (logits.argmax(-1) == y).sum(), torch.tensor(len(y), device=y.device)


# ---------------------------------------------------------------- pretraining tasks
def _encoder_hidden(model, batch):
    return model.forward_features(batch["input_ids"], batch.get("attention_mask"), batch.get("token_type_ids"))


def _masked_lm(model, batch, hidden) -> tuple[torch.Tensor, tuple]:
    """Vocabulary projection only at the masked positions: (N_masked, C) -> (N_masked, V)."""
    where = batch["labels"] != IGNORE  # (B, T)
    head = getattr(model.head, "mlm", model.head)
    logits = _wide(head(hidden[where]))  # (N, V)
    y = batch["labels"][where]
    return F.cross_entropy(logits, y, reduction="sum"), _accuracy(logits, y)


def _mlm_nsp_targets(batch):
    return {"mlm": (batch["labels"] != IGNORE).sum(), "nsp": torch.tensor(len(batch["next_sentence_label"]))}


@register_task("mlm_nsp", targets=_mlm_nsp_targets, perplexity="mlm")
def mlm_nsp(model, batch) -> TaskOutput:
    """BERT pretraining: masked-LM + next-sentence prediction (model.head = PretrainingHead)."""
    hidden = _encoder_hidden(model, batch)  # (B, T, C)
    mlm_loss, mlm_acc = _masked_lm(model, batch, hidden)
    nsp_logits = _wide(model.head.nsp(model.pool(hidden, batch.get("attention_mask"))))  # (B, 2)
    y = batch["next_sentence_label"]
    nsp_loss = F.cross_entropy(nsp_logits, y, reduction="sum")
    return TaskOutput({"mlm": mlm_loss, "nsp": nsp_loss}, {"mlm_acc": mlm_acc, "nsp_acc": _accuracy(nsp_logits, y)})


@register_task("mlm", targets=lambda b: {"mlm": (b["labels"] != IGNORE).sum()}, perplexity="mlm")
def mlm(model, batch) -> TaskOutput:
    """Masked-LM only (model.head = MaskedLMHead or PretrainingHead)."""
    loss, acc = _masked_lm(model, batch, _encoder_hidden(model, batch))
    return TaskOutput({"mlm": loss}, {"mlm_acc": acc})


def _clm_targets(batch):
    return {"clm": (batch["labels"][:, 1:] != IGNORE).sum()}


@register_task("clm", targets=_clm_targets, perplexity="clm")
def clm(model, batch) -> TaskOutput:
    """Next-token prediction. `labels` are aligned with `input_ids` (HF convention); shifted here."""
    hidden = model.forward_features(batch["input_ids"], batch.get("attention_mask"), batch.get("position_ids"),
                                    batch.get("document_ids"))  # (B, T, C)
    labels = batch["labels"][:, 1:]  # position t predicts token t + 1
    where = labels != IGNORE
    h = hidden[:, :-1][where]  # (N, C): only positions with a target reach the vocabulary projection
    return TaskOutput({"clm": linear_cross_entropy(h, model.head.proj, labels[where])})
