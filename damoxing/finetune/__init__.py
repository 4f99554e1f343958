"""Fine-tuning methods: they only choose what trains (full, head, features, lora).

The run itself (config -> model -> head -> method -> Trainer -> save -> evaluate) is the recipe
`damoxing.recipes.finetune`.
"""

from .config import FinetuneConfig, FinetuneDataConfig, FinetuneRunConfig, load_finetune_config
from .features import cached_features, fit_linear_head
from .lora import LoRALinear, apply_lora, load_adapters, lora_state_dict, merge_lora, save_adapters
from .methods import METHODS, layerwise_param_groups, prepare

__all__ = [
    "METHODS",
    "FinetuneConfig",
    "FinetuneDataConfig",
    "FinetuneRunConfig",
    "LoRALinear",
    "apply_lora",
    "cached_features",
    "fit_linear_head",
    "layerwise_param_groups",
    "load_adapters",
    "load_finetune_config",
    "lora_state_dict",
    "merge_lora",
    "prepare",
    "save_adapters",
]
