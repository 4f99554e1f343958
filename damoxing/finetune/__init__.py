"""Fine-tuning: methods (full, head, features, lora), tasks (sequence, pair, token, regression), the run.

    from damoxing.finetune import finetune
    result = finetune("configs/finetune-minilm-bbc.yaml", "runs/bbc", overrides=["finetune.method=lora"])
"""
from .config import FinetuneConfig, FinetuneDataConfig, FinetuneRunConfig, load_finetune_config
from .features import cached_features, fit_linear_head
from .lora import LoRALinear, apply_lora, load_adapters, lora_state_dict, merge_lora, save_adapters
from .methods import METHODS, layerwise_param_groups, prepare
from .run import FinetuneResult, finetune

__all__ = ["FinetuneConfig", "FinetuneDataConfig", "FinetuneRunConfig", "FinetuneResult", "LoRALinear", "METHODS",
           "apply_lora", "cached_features", "finetune", "fit_linear_head", "layerwise_param_groups",
           "load_adapters", "load_finetune_config", "lora_state_dict", "merge_lora", "prepare", "save_adapters"]
