"""ViT: `ViTModel` and `ViTForImageClassification` <-> our ViT (`models/vit.py`).

transformers' ViT always has a class token and learned positions, and its classifier reads [CLS]; a ViT
without them (or with 2-D sinusoidal positions) is saved as damoxing's own `damoxing_vit` (`NATIVE`).
The image processor's size and normalisation travel beside the weights in preprocessor_config.json
(`data/processors.py`).
"""

from __future__ import annotations

from ...models.vit import ViTConfig
from .base import ACT_TO_HF, HFMap, activation, no_save, per_block, unsupported
from .native import native_map

BASE = {
    "embeddings.cls_token": "embed.cls",
    "embeddings.position_embeddings": "embed.positions",
    "embeddings.patch_embeddings.projection.weight": "embed.patches.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "embed.patches.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
    "pooler.dense.weight": "pooler.weight",
    "pooler.dense.bias": "pooler.bias",
    **per_block(
        (
            ("layernorm_before", "norm1"),
            ("attention.attention.query", "attn.q"),
            ("attention.attention.key", "attn.k"),
            ("attention.attention.value", "attn.v"),
            ("attention.output.dense", "attn.o"),
            ("layernorm_after", "norm2"),
            ("intermediate.dense", "mlp.fc1"),
            ("output.dense", "mlp.fc2"),
        ),
        hf_prefix="encoder.layer.{}.",
    ),
}
HEADS = {
    "ViTModel": ("none", {}),
    "ViTForImageClassification": (
        "sequence",
        {"classifier.weight": "head.classifier.weight", "classifier.bias": "head.classifier.bias"},
    ),
}


def _side(cfg: dict, key: str, source) -> int:
    """image_size / patch_size: an int, or a [height, width] pair of equal sides."""
    value = cfg.get(key, 224 if key == "image_size" else 16)
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            unsupported(source, key, value, "only square images and patches")
        value = value[0]
    return int(value)


def config_from_hf(cfg: dict, head: str, num_labels: int, keys, source) -> ViTConfig:
    """`keys` are the checkpoint's weight names: the pooler is kept when the file has one."""
    if not cfg.get("qkv_bias", True):
        unsupported(source, "qkv_bias", False, "damoxing's attention has biases on q, k and v")
    pooler = any(k.endswith("pooler.dense.weight") for k in keys)
    if pooler and cfg.get("pooler_act", "tanh") != "tanh":
        unsupported(source, "pooler_act", cfg["pooler_act"], "only 'tanh'")
    if pooler and cfg.get("pooler_output_size") not in (None, cfg["hidden_size"]):
        unsupported(source, "pooler_output_size", cfg["pooler_output_size"], "it must equal hidden_size")
    return ViTConfig(
        image_size=_side(cfg, "image_size", source),
        patch_size=_side(cfg, "patch_size", source),
        channels=cfg.get("num_channels", 3),
        dim=cfg["hidden_size"],
        layers=cfg["num_hidden_layers"],
        heads=cfg["num_attention_heads"],
        mlp_dim=cfg["intermediate_size"],
        activation=activation(cfg, source),
        norm_eps=cfg.get("layer_norm_eps", 1e-12),
        pooler=pooler,
        pooling="cls",
        dropout=cfg.get("hidden_dropout_prob", 0.0),
        attention_dropout=cfg.get("attention_probs_dropout_prob", 0.0),
        classifier_dropout=cfg.get("classifier_dropout") or 0.0,
        init_std=cfg.get("initializer_range", 0.02),
        head=head,
        num_labels=num_labels,
    )


def is_hf_vit(c) -> bool:
    """Whether transformers' ViT holds this config: a class token, learned positions, [CLS] classification."""
    return (
        isinstance(c, ViTConfig)
        and c.class_token
        and c.position == "learned"
        and (c.head != "sequence" or c.pooling == "cls")
    )


def architecture_for(c) -> str | None:
    if not is_hf_vit(c):
        return None  # NATIVE saves it
    if c.activation not in ACT_TO_HF:
        no_save(f"ViT has no activation {c.activation!r}")
    return {head: arch for arch, (head, _) in HEADS.items()}[c.head]


def config_to_hf(c: ViTConfig) -> dict:
    return {
        "hidden_size": c.dim,
        "num_hidden_layers": c.layers,
        "num_attention_heads": c.heads,
        "intermediate_size": c.mlp_dim,
        "hidden_act": ACT_TO_HF[c.activation],
        "hidden_dropout_prob": c.dropout,
        "attention_probs_dropout_prob": c.attention_dropout,
        "layer_norm_eps": c.norm_eps,
        "image_size": c.image_size,
        "patch_size": c.patch_size,
        "num_channels": c.channels,
        "qkv_bias": True,
        "encoder_stride": c.patch_size,
        "pooler_act": "tanh",
        "pooler_output_size": c.dim,
        "classifier_dropout": c.classifier_dropout,
    }  # not a ViT field: transformers keeps it unused


def keep_on_save(arch: str, name: str) -> bool:
    """ViTForImageClassification has no pooler: ours is not stored there."""
    return not (arch == "ViTForImageClassification" and name.startswith("pooler."))


MAP = HFMap(
    "vit",
    "vit.",
    BASE,
    HEADS,
    config_from_hf,
    config_to_hf,
    architecture_for,
    keep_on_save=keep_on_save,
    base_architecture="ViTModel",
)

# ViTs transformers cannot hold: our weight names and every config field, model type damoxing_vit
NATIVE = native_map(
    "damoxing_vit",
    ViTConfig,
    [
        "embed.cls",
        "embed.positions",
        "embed.patches.proj.weight",
        "embed.patches.proj.bias",
        "norm.weight",
        "norm.bias",
        "pooler.weight",
        "pooler.bias",
        *per_block(
            (
                ("norm1", "norm1"),
                ("attn.q", "attn.q"),
                ("attn.k", "attn.k"),
                ("attn.v", "attn.v"),
                ("attn.o", "attn.o"),
                ("norm2", "norm2"),
                ("mlp.fc1", "mlp.fc1"),
                ("mlp.fc2", "mlp.fc2"),
            ),
            hf_prefix="blocks.{}.",
        ),
    ],
    "DamoxingViT",
    accepts=lambda c: not is_hf_vit(c),
)
