"""Tasks: one file per task, each owning records -> batch -> loss -> metrics -> prediction row (see base.py).

    task = get_task("classification")        # or a config's train.task / finetune.task
    out = task.loss(model, batch)            # what the Trainer calls

Registered names: classification, pair, token_classification, regression, image_classification,
tabular_classification, translation (fine-tuning, evaluation, prediction); mlm_nsp, masked_lm, clm,
span_corruption (pretraining; clm also evaluates text files).
Earlier names still read: sequence -> classification, token -> token_classification, mlm -> masked_lm.
`Distillation` (distill.py) wraps one of these around a teacher model, per run, so it has no registered name.
"""

from __future__ import annotations

from ..config import Registry
from .base import SupervisedTask, Task, TaskOutput, chunks, model_inputs
from .causal_lm import CausalLM
from .classification import Classification
from .distill import Distillation
from .image_classification import ImageClassification
from .masked_lm import MaskedLM, MaskedLMNextSentence
from .pair import Pair
from .regression import Regression
from .span import SpanCorruption
from .tabular_classification import TabularClassification
from .token import TokenClassification
from .translation import Translation

TASKS = Registry("task")
ALIASES = {"sequence": "classification", "token": "token_classification", "mlm": "masked_lm"}


def register(task: Task) -> Task:
    """Add a task under its name; a name registered twice is an error."""
    TASKS.register(task.name, task)
    return task


for _task in (
    Classification(),
    Pair(),
    TokenClassification(),
    Regression(),
    ImageClassification(),
    TabularClassification(),
    Translation(),
    MaskedLMNextSentence(),
    MaskedLM(),
    CausalLM(),
    SpanCorruption(),
):
    register(_task)


def get_task(name: str | Task, key: str = "task") -> Task:
    """The registered task of a name (earlier names accepted), or the task itself."""
    if isinstance(name, Task):
        return name
    return TASKS.get(ALIASES.get(name, name), key=key)


def task_for_head(config, labels: list[str] | None) -> Task:
    """The task a plain Hugging Face classification folder (no finetune.json) was trained for, from its head."""
    if config.head == "token":
        return TASKS.get("token_classification")
    if hasattr(config, "image_size"):  # ViTForImageClassification and damoxing's image families
        return TASKS.get("image_classification")
    if config.num_labels == 1 and (not labels or labels == ["LABEL_0"]):
        return TASKS.get("regression")
    return TASKS.get("classification")


def finetune_tasks() -> list[str]:
    """The registered tasks that `damoxing finetune` trains."""
    return [n for n in TASKS.names() if TASKS.get(n).finetune]


__all__ = [
    "ALIASES",
    "TASKS",
    "Distillation",
    "SupervisedTask",
    "Task",
    "TaskOutput",
    "chunks",
    "finetune_tasks",
    "get_task",
    "model_inputs",
    "register",
    "task_for_head",
]
