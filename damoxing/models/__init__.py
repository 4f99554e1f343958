"""Model families and named presets, resolved through registries (never import paths)."""

from __future__ import annotations

import dataclasses

from ..config import Registry, from_dict
from ..errors import ConfigError
from .base import ModelBase
from .cnn import CNN, CNNConfig
from .decoder import Decoder, DecoderConfig
from .encoder import Encoder, EncoderConfig
from .mlp import MLPConfig, MLPNet
from .seq2seq import Seq2Seq, Seq2SeqConfig
from .vit import ViT, ViTConfig

FAMILIES = Registry("model family")  # name -> (config class, model class)
FAMILIES.register("encoder", (EncoderConfig, Encoder))
FAMILIES.register("decoder", (DecoderConfig, Decoder))
FAMILIES.register("vit", (ViTConfig, ViT))
FAMILIES.register("cnn", (CNNConfig, CNN))
FAMILIES.register("mlp", (MLPConfig, MLPNet))
FAMILIES.register("seq2seq", (Seq2SeqConfig, Seq2Seq))

PRESETS = Registry("model preset")  # name -> (family, config fields)
PRESETS.register("bert-tiny", ("encoder", {"dim": 128, "layers": 2, "heads": 2, "mlp_dim": 512}))
PRESETS.register("bert-mini", ("encoder", {"dim": 256, "layers": 4, "heads": 4, "mlp_dim": 1024}))
PRESETS.register("bert-small", ("encoder", {"dim": 512, "layers": 4, "heads": 8, "mlp_dim": 2048}))
PRESETS.register("bert-base", ("encoder", {}))
PRESETS.register("gpt-mini", ("decoder", {"dim": 256, "layers": 4, "heads": 4, "mlp_dim": 1024, "max_positions": 512}))
PRESETS.register("gpt2-small", ("decoder", {}))
_LLAMA = {
    "position": "rope",
    "norm": "rmsnorm",
    "mlp": "swiglu",
    "activation": "silu",
    "attention_bias": False,
    "mlp_bias": False,
}
PRESETS.register(
    "llama-tiny",
    ("decoder", dict(_LLAMA, dim=256, layers=4, heads=8, kv_heads=2, mlp_dim=688, max_positions=2048, norm_eps=1e-6)),
)
PRESETS.register(
    "smollm2-135m",
    (
        "decoder",
        dict(
            _LLAMA,
            vocab_size=49152,
            dim=576,
            layers=30,
            heads=9,
            kv_heads=3,
            mlp_dim=1536,
            max_positions=8192,
            rope_base=100000.0,
            norm_eps=1e-5,
        ),
    ),
)
# images: 28x28 grey (MNIST, Fashion-MNIST) and ImageNet-sized 224x224 RGB
PRESETS.register(
    "vit-tiny",
    ("vit", {"image_size": 28, "patch_size": 4, "channels": 1, "dim": 64, "layers": 6, "heads": 4, "mlp_dim": 256}),
)  # about 0.3M parameters
PRESETS.register(
    "vit-ti16", ("vit", {"dim": 192, "layers": 12, "heads": 3, "mlp_dim": 768})
)  # timm's vit_tiny_patch16_224
PRESETS.register("vit-s16", ("vit", {"dim": 384, "layers": 12, "heads": 6, "mlp_dim": 1536}))
PRESETS.register("vit-b16", ("vit", {}))  # google/vit-base-patch16-224
PRESETS.register("vgg11", ("cnn", {"depths": (1, 1, 2, 2, 2)}))  # torchvision's vgg11_bn
PRESETS.register("vgg16", ("cnn", {"depths": (2, 2, 3, 3, 3)}))  # torchvision's vgg16_bn
PRESETS.register(
    "vgg-small",
    (
        "cnn",
        {
            "image_size": 28,
            "channels": 1,
            "widths": (32, 64, 128),
            "depths": (2, 2, 2),
            "pool_size": 3,
            "fc_dims": (256,),
            "dropout": 0.3,
        },
    ),
)  # about 0.6M parameters
PRESETS.register(
    "vgg-mini",
    (
        "cnn",
        {
            "image_size": 28,
            "channels": 1,
            "widths": (16, 32, 64),
            "depths": (2, 2, 2),
            "pool_size": 1,
            "fc_dims": (),
            "dropout": 0.0,
        },
    ),
)  # under 0.1M parameters
PRESETS.register("mlp-small", ("mlp", {}))  # 784-256-128-100 (Zalando's Fashion-MNIST benchmark)
PRESETS.register("mlp-base", ("mlp", {"hidden": (1024, 512, 256), "batch_norm": True, "dropout": 0.2}))
# encoder-decoder: the paper's base Transformer (shared 37k BPE vocabulary) and a small one
PRESETS.register("transformer-base", ("seq2seq", {"vocab_size": 37000}))
PRESETS.register(
    "transformer-small",
    ("seq2seq", {"vocab_size": 8000, "dim": 256, "layers": 3, "heads": 4, "mlp_dim": 1024, "max_positions": 256}),
)
_T5 = {
    "vocab_size": 32128,
    "position": "relative",
    "norm": "rmsnorm",
    "norm_position": "pre",
    "norm_eps": 1e-6,
    "bias": False,
    "scale_attention": False,
    "scale_embeddings": False,
    "max_positions": 512,
    "attention_dropout": 0.1,
    "pad_id": 0,
    "eos_id": 1,
    "decoder_start_id": 0,
}
PRESETS.register("t5-small", ("seq2seq", dict(_T5, dim=512, layers=6, heads=8, mlp_dim=2048, scale_output=True)))
PRESETS.register(
    "t5-v1.1-small",
    (
        "seq2seq",
        dict(
            _T5,
            dim=512,
            layers=8,
            heads=6,
            head_dim=64,
            mlp_dim=1024,
            mlp="gated",
            activation="gelu_tanh",
            tie_embeddings=False,
        ),
    ),
)
PRESETS.register(
    "marian-base",
    (
        "seq2seq",
        {
            "vocab_size": 59514,
            "activation": "silu",
            "logits_bias": True,
            "max_positions": 512,
            "pad_id": 59513,
            "eos_id": 0,
            "decoder_start_id": 59513,
        },
    ),
)


def family_of(config) -> str:
    for name in FAMILIES.names():
        if isinstance(config, FAMILIES.get(name)[0]):
            return name
    raise TypeError(f"not a model config: {type(config).__name__}")


def model_config(section: dict):
    """YAML `model:` section -> config. Either `preset: NAME` plus field overrides, or `family: NAME` plus fields."""
    section = dict(section or {})
    preset, family = section.pop("preset", None), section.pop("family", None)
    if preset is None and family is None:
        raise ConfigError(
            f"model: give 'preset' (one of {', '.join(PRESETS.names())}) or 'family' ({' | '.join(FAMILIES.names())})."
        )
    fields = {}
    if preset is not None:
        family_of_preset, fields = PRESETS.get(str(preset), key="model.preset")
        if family is not None and family != family_of_preset:
            raise ConfigError(f"model.family: preset {preset!r} is a {family_of_preset}, not a {family}.")
        family = family_of_preset
    config_cls, _ = FAMILIES.get(str(family), key="model.family")
    return from_dict(config_cls, {**fields, **section}, prefix="model")


def create_model(config) -> ModelBase:
    """A randomly initialised model for a config of any registered family."""
    return FAMILIES.get(family_of(config))[1](config)


def preset(name: str, **changes):
    family, fields = PRESETS.get(name, key="model.preset")
    return dataclasses.replace(FAMILIES.get(family)[0](**fields), **changes)


__all__ = [
    "CNN",
    "FAMILIES",
    "PRESETS",
    "CNNConfig",
    "Decoder",
    "DecoderConfig",
    "Encoder",
    "EncoderConfig",
    "MLPConfig",
    "MLPNet",
    "ModelBase",
    "Seq2Seq",
    "Seq2SeqConfig",
    "ViT",
    "ViTConfig",
    "create_model",
    "family_of",
    "model_config",
    "preset",
]
