"""Training: one readable loop (trainer.py) driven by small task functions (tasks.py).

    from damoxing.training import Trainer, TrainConfig
    Trainer(model, "clm", train_batches, TrainConfig(max_steps=100), "runs/x").fit()
"""
from .batches import Batches
from .config import DataConfig, RunConfig, TokenizerConfig, TrainConfig, load_run_config
from .tasks import TASKS, Task, TaskOutput, register_task
from . import distributed
from .trainer import Trainer

__all__ = ["Trainer", "distributed", "TrainConfig", "DataConfig", "TokenizerConfig", "RunConfig", "load_run_config", "Batches",
           "TASKS", "Task", "TaskOutput", "register_task"]
