"""Training: one readable loop (trainer.py) driven by a task (damoxing/tasks/).

from damoxing.training import Trainer, TrainConfig
Trainer(model, "clm", train_batches, TrainConfig(max_steps=100), "runs/x", save=save, load=load).fit()
"""

from . import distributed
from .batches import Batches
from .config import DataConfig, RunConfig, TokenizerConfig, TrainConfig, load_run_config
from .trainer import Trainer

__all__ = [
    "Batches",
    "DataConfig",
    "RunConfig",
    "TokenizerConfig",
    "TrainConfig",
    "Trainer",
    "distributed",
    "load_run_config",
]
