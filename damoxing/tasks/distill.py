"""`distill`: a student learns from its teacher's soft targets and from the hard labels, weighted.

    task = Distillation(teacher, get_task("classification"), temperature=2.0, alpha=0.5)
    Trainer(student, task, ...).fit()

loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * cross-entropy(student, labels), each summed
over the positions that have a label (rows for classifiers, next tokens for language models) and divided
by their count by the Trainer. alpha = 1 learns from the teacher alone. The base task (`classification`,
`pair`, `clm`, ...) says which logits and labels a batch has, through its `target_logits`. The task is built
per run around its teacher, so it is not one of the registered names.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..compress.distill import soft_target_loss
from ..config import check_positive, check_range
from .base import Task, TaskOutput, count


class Distillation(Task):
    name = "distill"

    def __init__(self, teacher: nn.Module, base: Task, temperature: float = 2.0, alpha: float = 0.5):
        check_positive("distill.temperature", temperature)
        check_range("distill.alpha", alpha, 0.0, 1.0)
        self.teacher, self.base, self.temperature, self.alpha = teacher.eval(), base, temperature, alpha
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.head, self.family, self.unit, self.metric = base.head, base.family, base.unit, base.metric
        self.perplexity = None

    def targets(self, batch: dict) -> dict[str, torch.Tensor]:
        n = sum(self.base.targets(batch).values())
        return {k: n for k in self.terms()}

    def terms(self) -> list[str]:
        return [k for k, weight in (("soft", self.alpha), ("hard", 1 - self.alpha)) if weight > 0]

    def loss(self, model: nn.Module, batch: dict) -> TaskOutput:
        student, labels = self.base.target_logits(model, batch)  # (N, classes), (N,)
        with torch.no_grad():
            teacher, _ = self.base.target_logits(self.teacher, batch)
        student, teacher = _wide(student), _wide(teacher)
        losses = {}
        if self.alpha > 0:
            losses["soft"] = self.alpha * soft_target_loss(student, teacher, self.temperature)
        if self.alpha < 1:
            losses["hard"] = (1 - self.alpha) * F.cross_entropy(student, labels, reduction="sum")
        n = count(len(labels), labels)
        guess = student.argmax(-1)
        return TaskOutput(
            losses, {"accuracy": ((guess == labels).sum(), n), "agreement": ((guess == teacher.argmax(-1)).sum(), n)}
        )

    def items(self, batch: dict) -> int:
        return self.base.items(batch)


def _wide(logits: torch.Tensor) -> torch.Tensor:
    """Softmax and its logarithm in at least float32 (bf16 / fp16 logits under autocast)."""
    return logits if logits.dtype == torch.float64 else logits.float()
