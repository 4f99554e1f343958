"""damoxing's own families in the Hugging Face folder layout: config.json + model.safetensors.

transformers has no VGG-style CNN or plain MLP, and its ViT always has a class token and learned
positions. Such models are saved with damoxing's own model types ("damoxing_cnn", "damoxing_mlp",
"damoxing_vit"): the same folder layout and label fields, our weight names unchanged, and every config
field in config.json. `damoxing.load` reads them; transformers does not (unknown model type).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

from ...config import from_dict, to_dict
from .base import HFMap

OWN_FIELDS = ("head", "num_labels", "init_std")  # written by the generic code (architectures, id2label, ...)
CLASSIFIER = {"head.classifier.weight": "head.classifier.weight", "head.classifier.bias": "head.classifier.bias"}


def native_map(
    model_type: str, config_cls, keys: Iterable[str], name: str, accepts: Callable[[object], bool] = lambda c: True
) -> HFMap:
    """An HFMap that keeps our names (`keys`: body weight templates, '{}' = block index) and config fields.

    Architectures: `{name}Model` (no head) and `{name}ForImageClassification` (a sequence head).
    `accepts(config)`: whether this map saves the config (another map may claim it first).
    """
    base_arch, classifier_arch = f"{name}Model", f"{name}ForImageClassification"
    fields = [f.name for f in dataclasses.fields(config_cls) if f.name not in OWN_FIELDS]

    def config_from_hf(cfg: dict, head: str, num_labels: int, weights, source):
        values = {k: cfg[k] for k in fields if k in cfg}
        init = cfg.get("initializer_range", config_cls.init_std)
        return from_dict(
            config_cls, {**values, "head": head, "num_labels": num_labels, "init_std": init}, prefix=str(source)
        )

    def config_to_hf(c) -> dict:
        return {k: v for k, v in to_dict(c).items() if k in fields}

    def architecture_for(c) -> str | None:
        if not isinstance(c, config_cls) or not accepts(c):
            return None
        return classifier_arch if c.head == "sequence" else base_arch

    heads = {base_arch: ("none", {}), classifier_arch: ("sequence", CLASSIFIER)}
    return HFMap(
        model_type,
        "",
        {k: k for k in keys},
        heads,
        config_from_hf,
        config_to_hf,
        architecture_for,
        base_architecture=base_arch,
    )
